"""Model families behind one interface: `fit_model(frame, schema, spec)` returns a scikit-learn `Pipeline` whose
`predict_proba(frame)` reads the feature frame as Feast returns it.

Both families share the same preprocessing (`preprocessing.build_preprocessor`), so they read the same frame.
"""
