"""API keys are generated prefixed, random and long (storing and checking them: integration/test_apikeys.py)."""

from app.store.apikeys import generate_key


def test_keys_are_prefixed_random_and_long() -> None:
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(k.startswith("hk_") and len(k) == 3 + 43 for k in keys)  # 32 random bytes, url-safe base64

