"""The network admin: every page renders, and the forms check values like the network file loader does."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from callbroker.network import models as m

pytestmark = pytest.mark.django_db

DEMO_FILE = m.Campaign._meta.app_config.path + "/demo/demo-network.yaml"
MODELS = ["campaign", "buyer", "target", "targetstate", "targetusage", "publisher", "trackingnumber"]
ADDABLE = ["campaign", "buyer", "target", "publisher", "trackingnumber"]


@pytest.fixture
def demo(load):
    load(DEMO_FILE)
    target = m.Target.objects.get(key="acme-austin-central")
    m.TargetUsage.objects.create(target=target, period="D20261127", count=3)
    m.TargetState.objects.filter(target=target).update(
        active_calls=1, paused_until=timezone.now() + dt.timedelta(minutes=20), pause_reason="3 missed calls")


def target_form_data(target: m.Target, **changes: object) -> dict:
    data = {
        "key": target.key, "campaign": target.campaign_id, "buyer": target.buyer_id, "name": target.name,
        "number": target.number, "priority": target.priority, "weight": target.weight,
        "price": str(target.price),
        "min_talk_seconds": target.min_talk_seconds or "", "area": json.dumps(target.area),
        "accepts_unknown_location": "on" if target.accepts_unknown_location else "",
        "hours": json.dumps(target.hours) if target.hours else "",
        "hourly_cap": target.hourly_cap or "", "daily_cap": target.daily_cap or "",
        "monthly_cap": target.monthly_cap or "", "concurrency_limit": target.concurrency_limit or "",
        "paused": "", "blocked_prefixes": json.dumps(target.blocked_prefixes),
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v != "" or k in ("number", "hours", "min_talk_seconds")}


@pytest.mark.parametrize("model", MODELS)
def test_every_changelist_renders(admin_client, demo, model):
    response = admin_client.get(reverse(f"admin:network_{model}_changelist"))
    assert response.status_code == 200


def test_the_target_list_shows_the_auto_pause_and_caps(admin_client, demo):
    response = admin_client.get(reverse("admin:network_target_changelist"), {"q": "acme-austin-central"})
    content = response.content.decode()
    assert "3 missed calls" in content
    assert "4/h · 25/day · 400/mo · 2 at once" in content
    assert "$45.00" in content


@pytest.mark.parametrize("model", MODELS)
def test_every_change_form_renders(admin_client, demo, model):
    obj = m.Target._meta.apps.get_model("network", model).objects.first()
    response = admin_client.get(reverse(f"admin:network_{model}_change", args=[obj.pk]))
    assert response.status_code == 200


@pytest.mark.parametrize("model", ADDABLE)
def test_every_add_form_renders(admin_client, demo, model):
    response = admin_client.get(reverse(f"admin:network_{model}_add"))
    assert response.status_code == 200


def test_an_invalid_target_number_is_an_error_on_the_field(admin_client, demo):
    target = m.Target.objects.get(key="acme-austin-central")
    url = reverse("admin:network_target_change", args=[target.pk])

    response = admin_client.post(url, target_form_data(target, number="5125550150"))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["number"]
    assert "is not an E.164 phone number" in errors["number"][0]
    assert m.Target.objects.get(pk=target.pk).number == "+15125550150"


def test_area_and_hours_are_checked_like_the_network_file(admin_client, demo):
    target = m.Target.objects.get(key="acme-austin-central")
    url = reverse("admin:network_target_change", args=[target.pk])

    response = admin_client.post(url, target_form_data(
        target, area=json.dumps({"zips": ["78701", "99999"]}),
        hours=json.dumps({"weekly": {"mon": "25:00-18:00"}})))

    errors = response.context["adminform"].form.errors
    assert errors["area"] == ["zips[1]: 99999 is not a known ZIP code"]
    assert errors["hours"][0].startswith("weekly.mon: ")


def test_a_valid_target_change_is_saved_in_canonical_form(admin_client, demo):
    target = m.Target.objects.get(key="acme-austin-central")
    url = reverse("admin:network_target_change", args=[target.pk])

    response = admin_client.post(url, target_form_data(
        target, area=json.dumps({"zips": [78701], "states": []}), hours="", blocked_prefixes=""))

    assert response.status_code == 302, response.context["adminform"].form.errors
    target.refresh_from_db()
    assert target.area == {"zips": ["78701"]}
    assert target.hours is None
    assert target.blocked_prefixes == []


def test_a_target_added_in_the_admin_gets_its_live_state(admin_client, demo):
    template = m.Target.objects.get(key="acme-austin-central")
    data = target_form_data(template, key="acme-new", number="+15125550190", area="{}")

    response = admin_client.post(reverse("admin:network_target_add"), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert m.TargetState.objects.filter(target__key="acme-new").exists()


def test_a_forward_fallback_needs_a_number(admin_client, demo):
    campaign = m.Campaign.objects.get(key="austin-plumbing")
    url = reverse("admin:network_campaign_change", args=[campaign.pk])
    page = admin_client.get(url)
    form = page.context["adminform"].form
    data = {name: form[name].value() for name in form.fields}
    data.update({
        "fallback_kind": "forward", "fallback_number": "",
        "blocked_numbers": json.dumps(campaign.blocked_numbers), "blocked_prefixes": '["+1900", "1976"]',
        "duplicate_window": "30 00:00:00", "velocity_window": "00:10:00", "missed_calls_window": "01:00:00",
        "missed_calls_cooldown": "00:30:00",
        "targets-TOTAL_FORMS": "0", "targets-INITIAL_FORMS": "0",
    })
    data = {k: ("on" if v is True else v) for k, v in data.items() if v not in (None, False)}

    response = admin_client.post(url, data)

    errors = response.context["adminform"].form.errors
    assert errors["fallback_number"] == ["A forward fallback needs the number to forward to."]
    assert errors["blocked_prefixes"] == [
        "[1]: '1976' is not a number prefix (a + and digits, e.g. \"+1900\")"]


def campaign_form_data(admin_client, campaign: m.Campaign, **changes: object) -> dict:
    form = admin_client.get(reverse("admin:network_campaign_change", args=[campaign.pk])).context["adminform"].form
    data = {name: form[name].value() for name in form.fields}
    data.update({
        "blocked_numbers": json.dumps(campaign.blocked_numbers), "blocked_prefixes": json.dumps(campaign.blocked_prefixes),
        "duplicate_window": "30 00:00:00", "velocity_window": "00:10:00", "missed_calls_window": "01:00:00",
        "missed_calls_cooldown": "00:30:00", "targets-TOTAL_FORMS": "0", "targets-INITIAL_FORMS": "0", **changes,
    })
    return {k: ("on" if v is True else v) for k, v in data.items() if v not in (None, False)}


def test_a_negative_payout_or_price_is_refused(admin_client, demo):
    """A negative amount can't be billed: calls on it were left without a verdict, holding their slot."""
    campaign = m.Campaign.objects.get(key="austin-plumbing")
    response = admin_client.post(reverse("admin:network_campaign_change", args=[campaign.pk]),
                                 campaign_form_data(admin_client, campaign, payout="-5.00"))
    assert "payout" in response.context["adminform"].form.errors
    target = m.Target.objects.get(key="acme-austin-central")
    response = admin_client.post(reverse("admin:network_target_change", args=[target.pk]),
                                 target_form_data(target, price="-45.00"))
    assert "price" in response.context["adminform"].form.errors
    assert (m.Campaign.objects.get(pk=campaign.pk).payout, m.Target.objects.get(pk=target.pk).price) == (
        campaign.payout, target.price)


def test_a_currency_is_kept_as_the_network_file_keeps_it(admin_client, demo):
    campaign = m.Campaign.objects.get(key="austin-plumbing")
    url = reverse("admin:network_campaign_change", args=[campaign.pk])
    response = admin_client.post(url, campaign_form_data(admin_client, campaign, currency="usd"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert m.Campaign.objects.get(pk=campaign.pk).currency == "USD"  # one currency, one total on statements
    response = admin_client.post(url, campaign_form_data(admin_client, campaign, currency="U$"))
    assert response.context["adminform"].form.errors["currency"] == [
        "'U$' is not a currency code (three letters, e.g. USD)"]


def test_the_buyer_page_checks_its_inline_target_numbers(admin_client, demo):
    buyer = m.Buyer.objects.get(key="hill-country-plumbing")
    target = buyer.targets.get()
    url = reverse("admin:network_buyer_change", args=[buyer.pk])
    data = {
        "key": buyer.key, "name": buyer.name, "timezone": buyer.timezone, "email": buyer.email,
        "active": "on",
        "targets-TOTAL_FORMS": "1", "targets-INITIAL_FORMS": "1",
        "targets-0-id": target.pk, "targets-0-buyer": buyer.pk, "targets-0-key": target.key,
        "targets-0-campaign": target.campaign_id, "targets-0-name": target.name, "targets-0-number": "+1512",
        "targets-0-priority": target.priority, "targets-0-weight": target.weight,
        "targets-0-price": str(target.price),
    }

    response = admin_client.post(url, data)

    formset = response.context["inline_admin_formsets"][0].formset
    assert "is not" in formset.forms[0].errors["number"][0]
    data["timezone"] = "America/Chicgo"
    data["targets-0-number"] = "+15125550153"
    response = admin_client.post(url, data)
    assert response.context["adminform"].form.errors["timezone"] == [
        "'America/Chicgo' is not a time zone (did you mean 'America/Chicago'?)"]


def test_clear_auto_pause_action(admin_client, demo):
    paused = m.TargetState.objects.filter(paused_until__isnull=False)
    assert paused.count() == 1

    response = admin_client.post(reverse("admin:network_targetstate_changelist"), {
        "action": "clear_auto_pause_action",
        "_selected_action": [s.pk for s in m.TargetState.objects.all()],
    })

    assert response.status_code == 302
    assert not m.TargetState.objects.filter(paused_until__gt=timezone.now()).exists()  # the pause ended now
    assert not m.TargetState.objects.exclude(pause_reason="").exists()
    assert m.TargetState.objects.get(target__key="acme-austin-central").active_calls == 1  # untouched


def test_target_state_is_read_only(admin_client, demo):
    state = m.TargetState.objects.first()
    response = admin_client.post(reverse("admin:network_targetstate_change", args=[state.pk]),
                                 {"active_calls": 99})
    assert response.status_code == 403


def test_empty_json_fields_are_shown_empty_with_one_example_each(admin_client, demo):
    target = m.Target.objects.get(key="acme-austin-central")
    m.Target.objects.filter(pk=target.pk).update(area={}, hours=None, blocked_prefixes=[])

    form = admin_client.get(reverse("admin:network_target_change", args=[target.pk])).context["adminform"].form

    for name in ("area", "hours", "blocked_prefixes"):
        assert form[name].value() in ("", None) and form[name].as_widget().count("{}") == 0, name
        assert "null" not in form[name].as_widget() and "[]" not in form[name].as_widget(), name
        assert form.fields[name].help_text.count("e.g.") == 1, name
    assert '"states": ["TX"]' in form.fields["area"].help_text


def test_a_failed_save_keeps_the_stored_name_in_the_heading(admin_client, demo):
    target = m.Target.objects.get(key="acme-austin-central")
    url = reverse("admin:network_target_change", args=[target.pk])

    response = admin_client.post(url, target_form_data(target, name="Unsaved name", number="5125550150"))

    assert response.status_code == 200
    assert response.context["subtitle"] == str(target)
    assert "Unsaved name" not in response.content.decode().split('id="content-main"')[0]


# -- the admin refuses what the network file refuses (the loader's rules, the loader's messages) ----------


def test_the_campaign_form_refuses_what_the_network_file_refuses(admin_client, demo):
    campaign = m.Campaign.objects.get(key="austin-plumbing")
    url = reverse("admin:network_campaign_change", args=[campaign.pk])

    response = admin_client.post(url, campaign_form_data(
        admin_client, campaign, name="Roof\x0bing", buffer_seconds="99999", duplicate_window="-1 00:00:00",
        ring_timeout="9999", velocity_limit="0", velocity_window="00:00:00", missed_calls_limit="5000",
        missed_calls_window="00:00:00", missed_calls_cooldown="00:00:01.5"))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "name": ["holds the control character U+000B; remove it"],
        "buffer_seconds": ["99999 is too large (at most 7200)"],
        "duplicate_window": ["1d before zero is not a duration"],
        "ring_timeout": ["9999 is too large (at most 600)"],
        "velocity_limit": ["0 is too small (at least 1)"],
        "velocity_window": ["0s is too short (at least 1s)"],
        "missed_calls_limit": ["5000 is too large (at most 1000)"],
        "missed_calls_window": ["0s is too short (at least 1s)"],
        "missed_calls_cooldown": ["0:00:01.500000 is not a whole number of seconds"],
    }
    assert m.Campaign.objects.get(pk=campaign.pk).name == campaign.name


@pytest.mark.parametrize(("value", "message"), [
    ("00:00:01.5", "0:00:01.500000 is not a whole number of seconds"),  # saved, then export crashed
    ("999999999 00:00:00", "999999999d is too long (at most 3650d)"),  # a 500: too large for the column
])
def test_a_duration_the_network_file_cannot_hold_is_refused(admin_client, demo, value, message):
    campaign = m.Campaign.objects.get(key="austin-plumbing")
    url = reverse("admin:network_campaign_change", args=[campaign.pk])

    response = admin_client.post(url, campaign_form_data(admin_client, campaign, duplicate_window=value))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors == {"duplicate_window": [message]}
    assert m.Campaign.objects.get(pk=campaign.pk).duplicate_window == campaign.duplicate_window


def test_the_target_form_refuses_what_the_network_file_refuses(admin_client, demo):
    target = m.Target.objects.get(key="acme-austin-central")
    url = reverse("admin:network_target_change", args=[target.pk])

    response = admin_client.post(url, target_form_data(
        target, name="Main\u0085line", priority="5000", weight="5000", min_talk_seconds="99999",
        hourly_cap="2000000", price="45.001"))

    assert response.context["adminform"].form.errors == {
        "name": ["holds the control character U+0085 (next line); remove it"],
        "priority": ["5000 is too large (at most 1000)"],
        "weight": ["5000 is too large (at most 1000)"],
        "min_talk_seconds": ["99999 is too large (at most 7200)"],
        "hourly_cap": ["2000000 is too large (at most 1000000)"],
        "price": ["45.001 has more than two decimal places"],
    }


def test_buyer_and_publisher_emails_are_checked_like_the_network_file(admin_client, demo):
    long_email = "a" * 64 + "@" + ".".join(["b" * 63, "c" * 63, "d" * 63]) + ".com"
    assert len(long_email) == 260
    buyer = m.Buyer.objects.get(key="hill-country-plumbing")
    response = admin_client.post(reverse("admin:network_buyer_change", args=[buyer.pk]), {
        "key": buyer.key, "name": buyer.name, "timezone": buyer.timezone, "email": long_email, "active": "on",
        "targets-TOTAL_FORMS": "0", "targets-INITIAL_FORMS": "0"})
    assert response.context["adminform"].form.errors == {
        "email": ["is 260 characters long; at most 254 are allowed"]}
    publisher = m.Publisher.objects.first()
    response = admin_client.post(reverse("admin:network_publisher_change", args=[publisher.pk]), {
        "key": "metro search", "name": publisher.name, "email": "ops at metro", "active": "on"})
    assert response.context["adminform"].form.errors == {
        "key": ["'metro search' is not a key (letters, digits, '-' and '_', at most 64 characters, "
                "e.g. austin-plumbing)"],
        "email": ["'ops at metro' is not an email address"],
    }


def test_every_column_the_admin_edits_has_the_loaders_rule():
    """A column added later gets a rule in FIELD_RULES (or is knowingly left to Django), so the admin and
    the network file can't drift apart."""
    from django.db import models as dj

    from callbroker.network.loader import FIELD_RULES

    checked_elsewhere = {"area", "hours", "blocked_numbers", "blocked_prefixes"}  # parsing.*, in the forms
    for model, rules in FIELD_RULES.items():
        columns = {f.name for f in model._meta.get_fields()
                   if f.concrete and f.editable and not f.primary_key
                   and not isinstance(f, dj.BooleanField | dj.ForeignKey)}
        assert columns - checked_elsewhere == set(rules), model.__name__


def test_numbers_that_would_ring_back_are_refused_like_in_the_network_file(admin_client, demo):
    tracking = m.TrackingNumber.objects.first().number
    campaign = m.Campaign.objects.get(key="austin-plumbing")
    rings_back = f"{tracking} is a tracking number (already in the database); calls would ring back into the " \
                 f"platform"
    response = admin_client.post(
        reverse("admin:network_campaign_change", args=[campaign.pk]),
        campaign_form_data(admin_client, campaign, fallback_kind="voicemail", fallback_number=tracking))
    assert response.context["adminform"].form.errors == {"fallback_number": [rings_back]}

    target = m.Target.objects.get(key="acme-austin-central")
    response = admin_client.post(reverse("admin:network_target_change", args=[target.pk]),
                                 target_form_data(target, number=tracking))
    assert response.context["adminform"].form.errors == {"number": [rings_back]}

    m.Target.objects.filter(pk=target.pk).update(paused=True)
    response = admin_client.post(reverse("admin:network_trackingnumber_add"), {
        "number": target.number, "campaign": campaign.pk, "publisher": m.Publisher.objects.first().pk,
        "label": "", "active": "on"})
    assert response.context["adminform"].form.errors == {"number": [
        f"{target.number} is the number of target 'acme-austin-central', already in the database "
        f"(paused, but it keeps its number and can be unpaused); calls would ring back into the platform"]}


# -- deleting: a target's live state and cap counters go with it ----------------------------------------


def delete_page(admin_client, obj) -> str:
    """The delete page's text; fails when it says a permission is lacking or something protects ``obj``."""
    name = obj._meta.model_name
    response = admin_client.get(reverse(f"admin:network_{name}_delete", args=[obj.pk]))
    assert response.status_code == 200
    assert not response.context["perms_lacking"] and not response.context["protected"]
    return response.content.decode()


def test_a_target_is_deleted_from_its_page_with_its_live_state_and_counters(admin_client, demo):
    target = m.Target.objects.get(key="acme-austin-central")  # has a live state and a cap counter
    assert m.TargetUsage.objects.filter(target=target).exists()

    page = delete_page(admin_client, target)
    assert "Target live state: " in page and "Target usage: " in page  # listed as going with it
    response = admin_client.post(reverse("admin:network_target_delete", args=[target.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert not m.Target.objects.filter(pk=target.pk).exists()
    assert not m.TargetState.objects.filter(target_id=target.pk).exists()
    assert not m.TargetUsage.objects.filter(target_id=target.pk).exists()


def test_targets_are_deleted_by_the_bulk_action(admin_client, demo):
    targets = list(m.Target.objects.filter(campaign__key="austin-plumbing").values_list("pk", flat=True)[:2])
    url = reverse("admin:network_target_changelist")
    confirm = admin_client.post(url, {"action": "delete_selected", "_selected_action": targets})
    assert confirm.status_code == 200 and not confirm.context["perms_lacking"]

    response = admin_client.post(url, {"action": "delete_selected", "_selected_action": targets, "post": "yes"})

    assert response.status_code == 302
    assert not m.Target.objects.filter(pk__in=targets).exists()


def test_a_buyer_and_a_campaign_with_targets_can_be_deleted(admin_client, demo):
    buyer = m.Buyer.objects.get(key="acme-plumbing")
    delete_page(admin_client, buyer)
    response = admin_client.post(reverse("admin:network_buyer_delete", args=[buyer.pk]), {"post": "yes"})
    assert response.status_code == 302 and not m.Buyer.objects.filter(pk=buyer.pk).exists()

    campaign = m.Campaign.objects.get(key="denver-roofing")
    assert campaign.targets.exists()
    m.TrackingNumber.objects.filter(campaign=campaign).delete()  # those protect it: nothing else does
    delete_page(admin_client, campaign)
    response = admin_client.post(reverse("admin:network_campaign_delete", args=[campaign.pk]), {"post": "yes"})
    assert response.status_code == 302 and not m.Campaign.objects.filter(pk=campaign.pk).exists()
    assert not m.Target.objects.filter(campaign_id=campaign.pk).exists()


def test_a_campaign_with_tracking_numbers_stays_protected(admin_client, demo):
    campaign = m.Campaign.objects.get(key="austin-plumbing")
    response = admin_client.post(reverse("admin:network_campaign_delete", args=[campaign.pk]), {"post": "yes"})
    assert m.Campaign.objects.filter(pk=campaign.pk).exists()
    assert response.context["protected"] and "Tracking number: " in response.content.decode()


@pytest.mark.parametrize("model", ["targetstate", "targetusage"])
def test_live_state_and_counters_are_not_deleted_on_their_own(admin_client, demo, model):
    obj = m.Target._meta.apps.get_model("network", model).objects.first()
    response = admin_client.post(reverse(f"admin:network_{model}_delete", args=[obj.pk]), {"post": "yes"})
    assert response.status_code == 403
    response = admin_client.post(reverse(f"admin:network_{model}_changelist"),
                                 {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"})
    assert type(obj).objects.filter(pk=obj.pk).exists()


# -- large forms: what a network file loads, a staff member can save (docs/security.md#request-bodies) ----


def change_form_data(response) -> dict:
    """Every value a browser would post from an admin change page (the hidden ``initial-`` copies too)."""
    forms = [response.context["adminform"].form]
    data: dict = {}
    for inline in response.context["inline_admin_formsets"]:
        forms += [inline.formset.management_form, *inline.formset.forms]
    for form in forms:
        for field in form:
            value = field.value()
            if value is True:
                value = "on"
            if value is None or value is False:
                continue
            data[field.html_name] = value
            if field.field.show_hidden_initial:
                data[field.html_initial_name] = value
    return data


def post_as_a_browser(admin_client, url: str, data: dict):
    from urllib.parse import urlencode

    body = urlencode(data, doseq=True)
    return admin_client.post(url, body, content_type="application/x-www-form-urlencoded"), len(body)


def test_a_target_whose_area_lists_thousands_of_zips_is_saved(admin_client, demo, zip_directory):
    zips = sorted(zip_directory.in_state("TX"))[:2000] + sorted(zip_directory.in_state("CA"))[:2000]
    target = m.Target.objects.get(key="acme-austin-central")
    m.Target.objects.filter(pk=target.pk).update(area={"zips": zips})  # as a network file loads it
    url = reverse("admin:network_target_change", args=[target.pk])
    data = change_form_data(admin_client.get(url))
    assert "initial-area" in data  # the area is posted twice
    data["price"] = "31.00"

    response, size = post_as_a_browser(admin_client, url, data)

    assert size > 64 * 1024  # CALLBROKER_MAX_BODY_BYTES, the carriers' limit
    assert response.status_code == 302, response.content[:300]
    target.refresh_from_db()
    assert str(target.price) == "31.00" and len(target.area["zips"]) == 4000


def test_a_buyer_with_200_targets_is_saved(admin_client, load):
    network = {"version": 1,
               "campaigns": [{"key": "big", "name": "Big", "fallback": {"kind": "message", "message": "Sorry."}}],
               "buyers": [{"key": "national", "name": "National", "targets": [
                   {"key": f"nat-{i:03}", "campaign": "big", "number": f"+1512555{i:04}"} for i in range(200)]}]}
    load(network)
    buyer = m.Buyer.objects.get(key="national")
    url = reverse("admin:network_buyer_change", args=[buyer.pk])
    data = change_form_data(admin_client.get(url))
    data["email"] = "ops@national.example"

    response, _size = post_as_a_browser(admin_client, url, data)

    assert len(data) > 1500  # 8 a target
    assert response.status_code == 302, response.content[:300]
    assert m.Buyer.objects.get(pk=buyer.pk).email == "ops@national.example"

    campaign = m.Campaign.objects.get(key="big")
    url = reverse("admin:network_campaign_change", args=[campaign.pk])
    data = change_form_data(admin_client.get(url))
    data["name"] = "Big campaign"
    response, _size = post_as_a_browser(admin_client, url, data)
    assert response.status_code == 302, response.content[:300]
    assert m.Campaign.objects.get(pk=campaign.pk).name == "Big campaign"


# -- a key written twice in the admin's JSON is refused, as the network file refuses it -------------------


@pytest.mark.parametrize("field,value,key", [
    ("hours", '{"weekly": {"mon": "08:00-10:00", "mon": "09:00-18:00"}}', "mon"),
    ("hours", '{"weekly": {"mon": "08:00-18:00"}, "weekly": {"tue": "08:00-18:00"}}', "weekly"),
    ("area", '{"zips": ["78701"], "zips": ["78702"]}', "zips"),
    ("area", '{"radius": [{"zip": "78701", "miles": 5, "miles": 50}]}', "miles"),
])
def test_a_key_given_twice_in_the_json_is_refused_naming_it(admin_client, demo, field, value, key):
    target = m.Target.objects.get(key="acme-austin-central")
    stored = getattr(target, field)

    response = admin_client.post(reverse("admin:network_target_change", args=[target.pk]),
                                 target_form_data(target, **{field: value}))

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors[field] == [f"The key '{key}' is given twice in one object."]
    assert form[field].value() == value  # shown again as typed, both keys
    assert getattr(m.Target.objects.get(pk=target.pk), field) == stored


def test_a_key_given_twice_in_a_campaigns_json_is_refused(admin_client, demo):
    campaign = m.Campaign.objects.get(key="austin-plumbing")
    response = admin_client.post(
        reverse("admin:network_campaign_change", args=[campaign.pk]),
        campaign_form_data(admin_client, campaign, blocked_prefixes='[{"a": 1, "a": 2}]'))
    assert response.context["adminform"].form.errors["blocked_prefixes"] == [
        "The key 'a' is given twice in one object."]


@pytest.mark.parametrize("query", ["created_at__year=0", "created_at__year=99999", "created_at__year=-1",
                                   "updated_at__year=0", "updated_at__year=10000"])
def test_a_date_out_of_the_calendar_is_a_bad_lookup_not_a_500(admin_client, demo, query):
    url = reverse("admin:network_campaign_changelist")
    response = admin_client.get(f"{url}?{query}")
    assert response.status_code == 302 and response.url == f"{url}?e=1"
    # The calendar's last month is a month like any other here (no date hierarchy: no end to work out).
    assert admin_client.get(f"{url}?updated_at__year=9999&updated_at__month=12").status_code == 200


def test_the_auto_pause_column_names_its_time_zone(admin_client, demo):
    state = m.TargetState.objects.get(target__key="acme-austin-central")
    until = timezone.localtime(state.paused_until).strftime("%Y-%m-%d %H:%M")
    response = admin_client.get(reverse("admin:network_target_changelist"), {"q": "acme-austin-central"})
    assert f"until {until} UTC (3 missed calls)" in response.content.decode()


def test_clearing_the_auto_pause_counts_only_the_targets_still_paused(admin_client, demo):
    ended = m.TargetState.objects.get(target__key="acme-austin-north")
    m.TargetState.objects.filter(pk=ended.pk).update(paused_until=timezone.now() - dt.timedelta(minutes=5),
                                                     pause_reason="2 missed calls")  # ran out by itself

    response = admin_client.post(reverse("admin:network_target_changelist"), {
        "action": "clear_auto_pause_action",
        "_selected_action": list(m.Target.objects.values_list("pk", flat=True))}, follow=True)

    assert [str(message) for message in response.context["messages"]] == [
        "Cleared the automatic pause of 1 target(s)."]
    assert not m.TargetState.objects.exclude(pause_reason="").exists()  # the ended one's reason tidied too


def test_a_buyers_page_reads_the_same_number_of_queries_for_3_targets_as_for_30(admin_client, load):
    """Each target row read the list of campaigns again and loaded its buyer: two queries per target."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def buyer_with(count: int) -> m.Buyer:
        load({"version": 1,
              "campaigns": [{"key": f"c{i}", "name": f"Campaign {i}", "fallback": {"kind": "message",
                                                                                "message": "Sorry."}}
                            for i in range(3)],
              "buyers": [{"key": f"b{count}", "name": f"Buyer of {count}", "targets": [
                  {"key": f"b{count}-{i:03}", "campaign": f"c{i % 3}", "number": f"+1512{5 + count % 4}55{i:04}"}
                  for i in range(count)]}]}, prune=False)
        return m.Buyer.objects.get(key=f"b{count}")

    few, many = buyer_with(3), buyer_with(30)
    admin_client.get(reverse("admin:network_buyer_change", args=[few.pk]))  # the session, content types
    counted = {}
    for buyer in (few, many):
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(reverse("admin:network_buyer_change", args=[buyer.pk]))
        assert response.status_code == 200
        counted[buyer.key] = len(queries.captured_queries)
        formset = response.context["inline_admin_formsets"][0].formset
        for form in formset.forms:  # each row still shows its own campaign chosen
            html = str(form["campaign"])
            assert f'<option value="{form.instance.campaign_id}" selected>' in html, html[:300]
            assert html.count("<option") == 4  # the three campaigns and the empty choice

    assert counted["b30"] == counted["b3"], counted


@pytest.mark.parametrize("query", [{"target__campaign__id__exact": "CAMPAIGN"}, {"q": "acme"}])
def test_a_filtered_page_of_cap_counters_does_not_count_every_counter(admin_client, demo, query):
    """The counters are kept for good, a row per target and hour: the whole table was counted on every
    filtered or searched page, for the "N of M" beside the search box."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    campaign = m.Target.objects.get(key="acme-austin-central").campaign_id
    query = {name: str(campaign) if value == "CAMPAIGN" else value for name, value in query.items()}
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse("admin:network_targetusage_changelist"), query)

    assert response.status_code == 200
    assert "D20261127" in response.content.decode()  # the demo's counter found
    counts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT COUNT(*)")]
    assert counts and all(" WHERE " in sql for sql in counts), counts


def tracking_number_form_data(tracking: m.TrackingNumber, **changes: object) -> dict:
    data = {"number": tracking.number, "campaign": tracking.campaign_id, "publisher": tracking.publisher_id,
            "label": tracking.label, "active": "on" if tracking.active else ""}
    data.update(changes)
    return {k: v for k, v in data.items() if v != ""}


NO_KEYS = ["abc", "1.5", "99999999999999999999", "null", "[]"]


@pytest.mark.parametrize("value", NO_KEYS)
@pytest.mark.parametrize("field", ["buyer", "campaign"])
def test_a_target_posted_with_a_choice_that_is_no_key_is_refused_on_the_field_not_a_500(
        admin_client, demo, field, value):
    """The form refused it; the page showing the error looked the value up to label the autocomplete field:
    ``ValueError: Field 'id' expected a number but got 'abc'`` (SQLite's ``OverflowError`` for the large
    one), a 500."""
    target = m.Target.objects.get(key="acme-austin-central")
    before = (target.buyer_id, target.campaign_id)
    response = admin_client.post(reverse("admin:network_target_change", args=[target.pk]),
                                 target_form_data(target, **{field: value}))
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == [field]
    target.refresh_from_db()
    assert (target.buyer_id, target.campaign_id) == before  # nothing written
    added = admin_client.post(reverse("admin:network_target_add"),
                              target_form_data(target, key="new-line", number="+15125550999", **{field: value}))
    assert added.status_code == 200 and field in added.context["adminform"].form.errors


@pytest.mark.parametrize("value", NO_KEYS)
@pytest.mark.parametrize("field", ["campaign", "publisher"])
def test_a_tracking_number_posted_with_a_choice_that_is_no_key_is_refused_on_the_field(
        admin_client, demo, field, value):
    """On the page that refuses the value, the other autocomplete field still shows its real choice with its
    label (only values that are no key are left out of the lookup): that page was a 500."""
    number = m.TrackingNumber.objects.select_related("campaign", "publisher").first()
    other = {"campaign": "publisher", "publisher": "campaign"}[field]
    response = admin_client.post(reverse("admin:network_trackingnumber_change", args=[number.pk]),
                                 tracking_number_form_data(number, **{field: value}))
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == [field]
    chosen = getattr(number, other)
    assert f'<option value="{chosen.pk}" selected>{escape(chosen)}</option>' in response.content.decode()
