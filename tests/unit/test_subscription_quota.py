"""A key's subscription slots are given back however the subscription ends (over real websockets:
integration/test_subscriptions.py)."""

import pytest

from app.api.subscriptions import SubscriptionQuota, SubscriptionQuotaReached


def test_a_slot_is_given_back_however_the_subscription_ends() -> None:
    quota = SubscriptionQuota(per_key=1)
    with quota.hold(b"k"):
        assert quota.open_for(b"k") == 1
        with pytest.raises(SubscriptionQuotaReached, match="at most 1"), quota.hold(b"k"):
            pass
        with quota.hold(b"other"):
            assert quota.open_for(b"other") == 1
    assert quota.open_for(b"k") == 0
    with pytest.raises(RuntimeError), quota.hold(b"k"):
        raise RuntimeError("the stream failed")
    assert quota.open_for(b"k") == 0

