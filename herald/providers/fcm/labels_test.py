import itertools

import pytest

from herald.providers.fcm.labels import MAX_LABELS_PER_DAY, AnalyticsLabels, valid
from herald.settings import Settings


def test_an_allowed_pair_gets_its_own_label_and_a_listed_category_covers_its_templates():
    labels = AnalyticsLabels.parse("parcel_update.out_for_delivery, promotions")

    assert labels.label("parcel_update", "out_for_delivery") == "parcel_update.out_for_delivery"
    assert labels.label("promotions", "black friday") == "promotions"
    assert labels.label("parcel_update", "delayed").startswith("other-")


def test_words_outside_fcms_characters_are_percent_encoded_into_a_valid_label():
    labels = AnalyticsLabels.parse("Rückruf.tür auf")

    label = labels.label("Rückruf", "tür auf")

    assert label == "R%C3%BCckruf.t%C3%BCr%20auf"
    assert valid(label)


def test_a_thousand_categories_and_templates_stay_within_fcms_daily_limit_of_valid_labels():
    labels = AnalyticsLabels.parse("a.b,c")
    given = {labels.label(f"category-{c}", f"template/{t}")
             for c, t in itertools.product(range(40), range(25))}

    assert len(given) <= MAX_LABELS_PER_DAY
    assert given <= labels.all_labels()
    assert all(valid(label) for label in labels.all_labels())
    # the same pair always lands in the same bucket, so the slices are stable from day to day
    assert labels.label("category-3", "template/7") == labels.label("category-3", "template/7")


@pytest.mark.parametrize(("spec", "buckets", "message"), [
    (",".join(f"c{i}" for i in range(90)), 16, "exceed FCM's 100"),
    ("x" * 51, 16, "not valid"),
    ("other-01", 16, "not valid"),
    ("", 0, "buckets"),
])
def test_a_scheme_that_could_break_fcms_rules_is_refused(spec, buckets, message):
    with pytest.raises(ValueError, match=message):
        AnalyticsLabels.parse(spec, buckets)


def test_settings_read_the_scheme_from_the_environment():
    settings = Settings.from_env({"HERALD_FCM_ANALYTICS_LABELS": "security",
                                  "HERALD_FCM_LABEL_BUCKETS": "4"})

    assert settings.fcm_analytics_labels.label("security", "login") == "security"
    assert len(settings.fcm_analytics_labels.all_labels()) == 5
