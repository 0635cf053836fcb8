"""Who and what a click prediction is about: a user (string ids) and an item (integer ids)."""

from feast import Entity, ValueType

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING, description="A shopper.")
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.INT64, description="A catalogue item.")
