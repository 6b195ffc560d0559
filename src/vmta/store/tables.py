"""Table definitions. Migrations in ``migrations/versions`` must produce exactly these
(``tests/store/test_migrations.py`` compares them)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    false,
    func,
)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

# One table for the three VirtualMTA types, so that they share one id sequence and one
# case-insensitive name space (API.md §2.4). Columns that a type does not use stay null.
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
    # SHA-256 of the secret, hex. Secrets are >= 128 random bits, so a fast hash is safe:
    # there is nothing to guess that a slow hash would protect.
    Column("secret_sha256", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
