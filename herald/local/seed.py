"""Demo users and devices in Firestore, with every kind of opt-out, in the layout of
herald/users.py (what the registry API writes and the pipeline reads)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from google.cloud import firestore

from herald.contracts import DEVICE_INFO_PLATFORMS, Channel, Platform
from herald.users import (CATEGORIES, CHANNELS, EMAIL, LOCALE, NOTIFICATION_ENABLED, PHONE,
                          PLATFORM, TIMEZONE, TOKEN, device_ref, user_ref)

DEMO_CATEGORIES = ("delivery", "account", "marketing", "security")
_PLATFORMS = tuple(Platform)


@dataclass(frozen=True)
class SeedUser:
    """A user document and its devices, as written to Firestore."""

    user_id: str
    document: dict[str, Any]
    devices: dict[str, dict[str, Any]]


def expected_deliveries(body: Mapping[str, Any], users: Mapping[str, SeedUser]) -> int:
    """How many deliveries a request body fans out to over seeded `users`, judged from the seed
    alone (what end-to-end tests hold the pipeline to): a push to each of a user's devices (of the
    platform `metadata.deviceInfo` names, if any), else one per user, an unknown user included."""
    device_info = (body.get("metadata") or {}).get("deviceInfo")
    target = DEVICE_INFO_PLATFORMS[device_info.lower()] if device_info else None

    def per_user(user_id: str) -> int:
        user = users.get(user_id)
        if not user or body["notificationType"] != "push":
            return 1
        return len([device for device in user.devices.values()
                    if target is None or device["platform"] == target.value]) or 1
    return sum(per_user(user_id) for user_id in body.get("userIds") or [body["userId"]])


HOUSEHOLDS = 5
"""Pairs of users who share one phone, one email and one device (`household-N-a` / `-b`): real
address books have them, and a bulk request to both must still end each delivery once."""


def household(index: int) -> tuple[str, str]:
    """The user ids of household `index`."""
    return f"household-{index}-a", f"household-{index}-b"


def demo_users(count: int) -> Iterator[SeedUser]:
    """Deterministic users: every 10th opted out entirely, every 7th opted out of marketing,
    every 9th of SMS, every 5th with one disabled device, every 13th with an unregistered token,
    every 17th with no phone; then the HOUSEHOLDS pairs sharing contacts and a device (every
    user's devices are named dev-0, dev-1, ...)."""
    yield from _individuals(count)
    for index in range(HOUSEHOLDS):
        shared = f"home-{index}"
        for user_id in household(index):
            yield SeedUser(user_id, {
                NOTIFICATION_ENABLED: True,
                CATEGORIES: dict.fromkeys(DEMO_CATEGORIES, True),
                CHANNELS: {channel.value: True for channel in Channel},
                EMAIL: f"{shared}@example.com", PHONE: f"+1666{index:07d}",
                LOCALE: "en-US", TIMEZONE: "America/New_York",
            }, {"dev-0": {PLATFORM: Platform.ANDROID.value, TOKEN: f"tok-{shared}-tablet",
                          NOTIFICATION_ENABLED: True},
                "dev-1": {PLATFORM: Platform.IOS.value, TOKEN: f"tok-{user_id}-phone",
                          NOTIFICATION_ENABLED: True}})


def _individuals(count: int) -> Iterator[SeedUser]:
    for index in range(count):
        user_id = f"user-{index:05d}"
        document = {
            NOTIFICATION_ENABLED: index % 10 != 3,
            CATEGORIES: {category: not (category == "marketing" and index % 7 == 0)
                         for category in DEMO_CATEGORIES},
            CHANNELS: {channel.value: not (channel is Channel.SMS and index % 9 == 0)
                       for channel in Channel},
            EMAIL: f"{user_id}@example.com",
            PHONE: None if index % 17 == 0 else f"+1555{index:07d}",
            LOCALE: "en-US",
            TIMEZONE: "America/New_York",
        }
        devices = {}
        for number in range(1 + index % 3):
            platform = _PLATFORMS[(index + number) % len(_PLATFORMS)]
            token_prefix = "unregistered-" if index % 13 == 0 and number == 0 else "tok-"
            devices[f"dev-{number}"] = {
                PLATFORM: platform.value,
                TOKEN: f"{token_prefix}{user_id}-{number}",
                NOTIFICATION_ENABLED: not (index % 5 == 0 and number == 0),
            }
        yield SeedUser(user_id, document, devices)


def seed(client: firestore.Client, users: int) -> int:
    """Write `users` demo users with their devices in batched writes; returns documents written."""
    written = 0
    batch = client.batch()
    for user in demo_users(users):
        batch.set(user_ref(client, user.user_id), user.document)
        for device_id, device in user.devices.items():
            batch.set(device_ref(client, user.user_id, device_id), device)
        written += 1 + len(user.devices)
        if len(batch) >= 400:
            batch.commit()
            batch = client.batch()
    if len(batch):
        batch.commit()
    return written
