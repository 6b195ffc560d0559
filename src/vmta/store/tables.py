"""Table definitions. Migrations in ``migrations/versions`` must produce exactly these
(``tests/store/test_migrations.py`` compares them)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    false,
    func,
    text,
)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

# One table for the three VirtualMTA types, so that they share one id sequence and one
# case-insensitive name space (contract §2.4). Columns that a type does not use stay null.
virtual_mtas = Table(
    "virtual_mtas",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("type", String(20), nullable=False),
    Column("name", String(200), nullable=False),
    Column("name_key", String(200), nullable=False, unique=True),
    Column("redirect_id", Integer, ForeignKey("virtual_mtas.id"), nullable=True),
    # ip_address: ip + hostname; relay_server: source_ip.ip + source_ip.hostname
    Column("ip", String(45), nullable=True),
    Column("hostname", String(200), nullable=True),
    Column("destination_hostname", String(200), nullable=True),
    Column("destination_port", Integer, nullable=True),
    Column("username", String(200), nullable=True),
    Column("password", String(200), nullable=True),
    # relay_server: throttle_limits; ip_address: its `default` override (null = none)
    Column("max_concurrent_connections", Integer, nullable=True),
    Column("max_messages_per_hour", Integer, nullable=True),
    Column("delivery_paused", Boolean, nullable=False, server_default=false()),
    Column(
        "throttling_template_id",
        Integer,
        ForeignKey("throttling_templates.id"),
        nullable=True,
    ),
    # routing_rule: {"default": ..., "domain_overrides": [...]} with resolved ids
    Column("routing", JSON, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    sqlite_autoincrement=True,  # never reuse an id after a delete
)
Index("ix_virtual_mtas_type_id", virtual_mtas.c.type, virtual_mtas.c.id)
Index("ix_virtual_mtas_redirect_id", virtual_mtas.c.redirect_id)
Index("ix_virtual_mtas_ip", virtual_mtas.c.ip)

# Which VirtualMTAs a routing rule sends through: kept alongside the JSON so that
# "used by" and "delete refused while in use" are indexed look-ups.
routing_rule_targets = Table(
    "routing_rule_targets",
    metadata,
    Column(
        "rule_id",
        Integer,
        ForeignKey("virtual_mtas.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("target_id", Integer, ForeignKey("virtual_mtas.id"), primary_key=True),
)
Index("ix_routing_rule_targets_target_id", routing_rule_targets.c.target_id)

throttling_templates = Table(
    "throttling_templates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("name_key", String(200), nullable=False, unique=True),
    Column("rules", JSON, nullable=False),
    Column("default_max_concurrent_connections", Integer, nullable=False),
    Column("default_max_messages_per_hour", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    sqlite_autoincrement=True,
)

# Ids of items inside records (domain overrides, throttle rules): one global sequence.
item_ids = Table(
    "item_ids",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    sqlite_autoincrement=True,
)

# Singleton row (id = 1) of control-plane settings.
control_settings = Table(
    "control_settings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("default_virtual_mta_id", Integer, ForeignKey("virtual_mtas.id"), nullable=True),
)

external_mtas = Table(
    "external_mtas",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # creation order
    Column("public_ip", String(45), nullable=False, unique=True),
    Column("local_ip", String(45), nullable=False),
    Column("connect_ip", String(45), nullable=True),
    Column("connect_port", Integer, nullable=False),
    Column("protocol", String(10), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    sqlite_autoincrement=True,
)

api_credentials = Table(
    "api_credentials",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    # SHA-256 (hex) of a generated secret, or a salted scrypt hash of an operator-chosen
    # one (domain/config/credential.py says why each; migration 0008 widened it).
    Column("secret_sha256", String(200), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# ---- MailerQ delivery control: pools, pauses, forced errors, suppressions --------------
# (REST API v1 /v1/pools, /v1/poolips, /v1/pauses, /v1/errors, /v1/suppressions)

mq_pools = Table(
    "mq_pools",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # creation order
    Column("name", String(100), nullable=False, unique=True),
    Column("description", Text, nullable=True),
    sqlite_autoincrement=True,
)

# An address is in at most one pool (adding it to another moves it): ip is unique.
mq_pool_ips = Table(
    "mq_pool_ips",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # order of addition
    Column("pool_id", Integer, ForeignKey("mq_pools.id", ondelete="CASCADE"), nullable=False),
    Column("ip", String(45), nullable=False, unique=True),
    sqlite_autoincrement=True,
)
Index("ix_mq_pool_ips_pool_id", mq_pool_ips.c.pool_id)


def _matcher_columns() -> list[Column[Any]]:
    """The fields a pause or forced error applies to; ``matcher_key`` joins them so that
    one unique index finds "the record with the same fields" (NULLs never collide in a
    unique index)."""
    return [
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("matcher_key", String(1200), nullable=False, unique=True),
        Column("pool", String(100), nullable=True),
        Column("mta", String(45), nullable=True),
        Column("domain", String(255), nullable=True),
        Column("ip", String(45), nullable=True),
        Column("tag", String(500), nullable=True),
        Column("cluster", Boolean, nullable=False, server_default=false()),
        Column("expire", Double, nullable=True),  # epoch seconds, UTC; null: until deleted
    ]


mq_pauses = Table("mq_pauses", metadata, *_matcher_columns(), sqlite_autoincrement=True)

mq_forced_errors = Table(
    "mq_forced_errors",
    metadata,
    *_matcher_columns(),
    Column("code", Integer, nullable=False),
    Column("extended", String(20), nullable=True),
    Column("description", Text, nullable=True),
    sqlite_autoincrement=True,
)

mq_suppressions = Table(
    "mq_suppressions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("value_key", String(320), nullable=False, unique=True),  # lower case
    Column("value", String(320), nullable=False),  # as given
    Column("type", String(10), nullable=False),  # address | domain
    Column("code", Integer, nullable=False),
    Column("extended", String(20), nullable=True),
    Column("description", Text, nullable=True),
    sqlite_autoincrement=True,
)

# ---- the spool ----------------------------------------------------------------------
# Times are seconds since the epoch (float): the delivery engine runs on an injectable
# clock, and comparisons stay cheap and identical on SQLite and PostgreSQL.

messages = Table(
    "messages",
    metadata,
    Column("id", String(32), primary_key=True),  # the queue id given in the 250 reply
    Column("received_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("mail_from", Text, nullable=False),  # "" for the null reverse-path <>
    Column("size", Integer, nullable=False),  # of ``body``, as stored
    Column("body", LargeBinary, nullable=False),
    # What ``body`` holds: 1, wire form (dot-stuffed, CRLF); 0, the message as given, as
    # every row written before revision 0014 (domain/message/wire_form.py).
    Column("body_format", SmallInteger, nullable=False, server_default=text("0")),
    # What the sender asked for (X-GreenArrow-MtaID / X-Virtual-MTA), resolved at each
    # attempt so that a VirtualMTA created later still applies.
    Column("vmta_selector", Text, nullable=True),
    Column("client_ip", String(45), nullable=True),
    Column("auth_name", String(200), nullable=True),
    # Choices kept across retries (routing rule randomization_type message_constant).
    Column("routing_memory", JSON, nullable=True),
    Column("is_bounce", Boolean, nullable=False, server_default=false()),
    # Header values that are removed before delivery but belong to the message's record
    # and its events (GreenArrow's X-GreenArrow-MailClass, -SendID, -ListID, ...).
    Column("kept_headers", JSON, nullable=True),
    # MailerQ message options that travel with the message (ips, pool, tags, maxattempts,
    # maxdelivertime, retries, nextattempt, and the JSON's other keys).
    Column("mq_options", JSON, nullable=True),
)
Index("ix_messages_received_at", messages.c.received_at)

recipients = Table(
    "recipients",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "message_id",
        String(32),
        ForeignKey("messages.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("address", Text, nullable=False),
    Column("state", String(12), nullable=False),  # queued, delivered, failed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Double, nullable=False),
    # A claim on the recipient by one node while it is being delivered. Leases, not row
    # locks: SQLite has no SELECT ... FOR UPDATE, and a lease survives a crash so that
    # recovery can count what was in flight.
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", Double, nullable=True),
    Column("last_attempt_at", Double, nullable=True),
    Column("last_reply", Text, nullable=True),
    Column("waiting_reason", Text, nullable=True),
    Column("virtual_mta", String(200), nullable=True),  # chosen at the last attempt
    Column("updated_at", Double, nullable=False),
)
Index("ix_recipients_state_next_attempt_at", recipients.c.state, recipients.c.next_attempt_at)
Index("ix_recipients_message_id", recipients.c.message_id)
Index("ix_recipients_lease_owner", recipients.c.lease_owner)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "message_id",
        String(32),
        ForeignKey("messages.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("recipient_id", Integer, nullable=False),
    Column("at", Double, nullable=False),
    Column("outcome", String(12), nullable=False),  # delivered, deferred, failed
    Column("virtual_mta", String(200), nullable=True),  # chosen
    Column("effective_virtual_mta", String(200), nullable=True),  # after redirects
    Column("source_ip", String(45), nullable=True),  # public_ip: what receivers see
    Column("remote_host", String(255), nullable=True),
    Column("remote_ip", String(45), nullable=True),
    Column("reply", Text, nullable=True),
)
Index("ix_attempts_message_id", attempts.c.message_id)

# ---- nodes of a cluster (migration 0010) ---------------------------------------------
# One row per running `vmta serve` process: its lease owner name, fresh at every start, and
# what tells a later process whether this one is gone. Times are the database's clock
# (``vmta.store.db_clock``), never a node's.

nodes = Table(
    "nodes",
    metadata,
    Column("id", String(64), primary_key=True),  # the lease owner name of the process
    # Shared by the runs of one data directory (and by its copies).
    Column("data_dir_id", String(64), nullable=False),
    Column("host", String(255), nullable=False),
    Column("boot_id", String(64), nullable=True),  # Linux: this boot of the host
    Column("pid", Integer, nullable=False),
    Column("started_at", Double, nullable=False),
    Column("heartbeat_at", Double, nullable=False),
)
Index("ix_nodes_data_dir_id", nodes.c.data_dir_id)

# ---- credential scopes (migration 0008) ------------------------------------------------
# admin: every endpoint; submit: injection only (domain/config/credential.py). Existing rows are
# admin, so every credential keeps the endpoints it had.
api_credentials.append_column(Column("scope", String(16), nullable=False, server_default="admin"))
# ---- the event outbox (migration 0006) ----------------------------------------------
# Every outcome's events are written in the transaction that records the outcome, so an
# event exists exactly when its outcome does, across any crash (docs/events.md). An event
# is one row; each destination that wants it has one row in event_deliveries, deleted
# once that destination acknowledged it. Rows per destination rather than a cursor per
# destination: on PostgreSQL several nodes commit events concurrently, ids do not commit
# in order, and a cursor could step over an id that commits later.

events = Table(
    "events",
    metadata,
    # Also the event's "id" field: unique, never reused (sqlite_autoincrement).
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("created_at", Double, nullable=False),
    Column("event_type", String(32), nullable=False),  # delivery_attempt, bounce_all
    Column("message_id", String(32), nullable=False),
    Column("payload", JSON, nullable=False),  # vmta.domain.reports.delivery_event.Event fields
    sqlite_autoincrement=True,
)

event_deliveries = Table(
    "event_deliveries",
    metadata,
    Column(
        "event_id",
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("events.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("destination", String(64), primary_key=True),
    # A claim by one node's sender while it sends (as for recipients: a lease survives a
    # crash and says what may have been sent already).
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", Double, nullable=True),
)
Index(
    "ix_event_deliveries_destination_event_id",
    event_deliveries.c.destination,
    event_deliveries.c.event_id,
)

# What each destination's sender last saw, for GET /api/events (shared by every node).
event_destinations = Table(
    "event_destinations",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("last_error", Text, nullable=True),
    Column("last_error_at", Double, nullable=True),
    Column("last_success_at", Double, nullable=True),
)
# ---- Dynamic Delivery: throttle programs, and throttling rules of IP addresses -------
# (migration 0007)

throttle_programs = Table(
    "throttle_programs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("name_key", String(200), nullable=False, unique=True),
    Column("builtin", Boolean, nullable=False, server_default=false()),
    # {"max_concurrent_connections": {"mode", "value"}, "max_messages_per_hour": {...}}
    Column("backoff", JSON, nullable=False),
    Column("return_after", Integer, nullable=False),
    Column("notify", String(254), nullable=True),
    Column("failure_rate", Integer, nullable=True),
    Column("deferral_rate", Integer, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    sqlite_autoincrement=True,
)

# Which templates and IP addresses have a rule naming a program: kept alongside the rules'
# JSON so that used_by and "delete refused while in use" are indexed look-ups.
throttle_program_users = Table(
    "throttle_program_users",
    metadata,
    Column("program_id", Integer, ForeignKey("throttle_programs.id"), primary_key=True),
    Column("user_type", String(30), primary_key=True),  # ip_address, throttling_template
    Column("user_id", Integer, primary_key=True),
)
Index(
    "ix_throttle_program_users_user_type_user_id",
    throttle_program_users.c.user_type,
    throttle_program_users.c.user_id,
)

# ip_address: its own throttling rules, in the shape of a template's rules (null = none).
virtual_mtas.append_column(Column("throttle_rules", JSON, nullable=True))

# ---- DKIM signing keys (migration 0011) ----------------------------------------------

# One row per key (RFC 6376 §3.6); domain and selector are unique together ignoring case
# (``domain_key``, ``selector_key``: lower-case copies). The private key is stored as PEM:
# the database is vmta's alone (data files 0600; PostgreSQL access is the operator's).
dkim_keys = Table(
    "dkim_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("domain", String(200), nullable=False),
    Column("domain_key", String(200), nullable=False),
    Column("selector", String(200), nullable=False),
    Column("selector_key", String(200), nullable=False),
    Column("default_for_domain", Boolean, nullable=False, server_default=false()),
    Column("key_type", String(16), nullable=False),
    Column("key_bits", Integer, nullable=False),
    Column("private_pem", Text, nullable=False),
    Column("public_key", Text, nullable=False),
    # A fresh item id at every insert and update (item_ids): signers compare count, max
    # and sum of it to reload their keys only when the table changed.
    Column("revision", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    sqlite_autoincrement=True,
)
Index(
    "ix_dkim_keys_domain_key_selector_key",
    dkim_keys.c.domain_key,
    dkim_keys.c.selector_key,
    unique=True,
)
# ---- the feedback loop: bounce counts and bad addresses (migration 0012) ----------------
# Each counted bounce of a recipient (address and list as vmta.domain.reports.bad_address keys
# them), so that the bad-address thresholds can be applied; soft bounces older than the
# window are deleted as new ones arrive.
address_bounces = Table(
    "address_bounces",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("address_key", String(320), nullable=False),
    Column("list_key", String(200), nullable=False),
    Column("bounce_type", String(1), nullable=False),  # h, s
    Column("at", Double, nullable=False),
)
Index(
    "ix_address_bounces_address_key_list_key",
    address_bounces.c.address_key,
    address_bounces.c.list_key,
)

# A recipient and list found bad: bounce_bad_address was written once, at ``at``.
bad_addresses = Table(
    "bad_addresses",
    metadata,
    Column("address_key", String(320), primary_key=True),
    Column("list_key", String(200), primary_key=True),
    Column("at", Double, nullable=False),
    Column("reason", Text, nullable=False),
)

# Where each attempt ended, as MailerQ's results say it: ``stage`` (MailerQ's ``state``),
# the messages sent on its connection so far, and whether the server offered DSN.
attempts.append_column(Column("stage", String(16), nullable=True))
attempts.append_column(Column("result", String(10), nullable=True))
attempts.append_column(Column("session_messages", Integer, nullable=True))
attempts.append_column(Column("remote_dsn", Boolean, nullable=True))
# ---- What comes back: incoming email domains, inbound mail, reports (migration 0013) ----

# GreenArrow's incoming email domains: the domains vmta receives bounces and complaints
# at. ``domain_key`` is the lower-cased domain (unique ignoring case).
incoming_email_domains = Table(
    "incoming_email_domains",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("domain", String(200), nullable=False),
    Column("domain_key", String(200), nullable=False, unique=True),
    Column("email_status", String(10), nullable=False),  # normal, defer, disabled
    sqlite_autoincrement=True,
)

# The mailboxes of a domain, one id sequence for the three kinds (bounce,
# spam_complaint, forwarding); a local part is unique per domain ignoring case.
incoming_mailboxes = Table(
    "incoming_mailboxes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "domain_id",
        Integer,
        ForeignKey("incoming_email_domains.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("kind", String(20), nullable=False),
    Column("localpart", String(64), nullable=False),
    Column("localpart_key", String(64), nullable=False),
    Column("forward_to", JSON, nullable=True),  # forwarding: the addresses
    Column("is_wildcard", Boolean, nullable=False, server_default=false()),
    sqlite_autoincrement=True,
)
Index(
    "ix_incoming_mailboxes_domain_id_localpart_key",
    incoming_mailboxes.c.domain_id,
    incoming_mailboxes.c.localpart_key,
    unique=True,
)

# Mail the inbound listener accepted, committed before its 250; processed (parsed,
# matched, turned into events) later, under a lease as recipients are delivered.
inbound_messages = Table(
    "inbound_messages",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("received_at", Double, nullable=False),
    Column("mail_from", Text, nullable=False),
    Column("recipients", JSON, nullable=False),
    Column("client_ip", String(45), nullable=True),
    Column("body", LargeBinary, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", Double, nullable=True),
    sqlite_autoincrement=True,
)

# What the bounce and complaint mailboxes made of what they received: kept 30 days when
# it matched no message (GET /api/reports?matched=false).
feedback_reports = Table(
    "feedback_reports",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("received_at", Double, nullable=False),
    Column("kind", String(20), nullable=False),  # bounce, complaint
    Column("matched", Boolean, nullable=False),
    Column("mailbox", Text, nullable=False),  # the address it came to
    Column("queue_id", String(32), nullable=True),
    Column("recipient", Text, nullable=True),
    Column("report", JSON, nullable=False),  # vmta.feedback.report fields
    sqlite_autoincrement=True,
)
Index(
    "ix_feedback_reports_matched_received_at",
    feedback_reports.c.matched,
    feedback_reports.c.received_at,
)

# Secrets of this installation shared by every node (the VERP token's HMAC key).
installation_secrets = Table(
    "installation_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", LargeBinary, nullable=False),
)
