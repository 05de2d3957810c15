"""The app database (DESIGN §4): users, households, devices, daily usage, incentives.

PostgreSQL in the stack profile, SQLite (WAL) when embedded; the URL defaults to
``settings.app_database_url``. The schema is owned by the Alembic migrations in
``migrations/``: call :func:`migrate` at start-up, never ``Base.metadata.create_all``.
"""

from hems.stores.appdb.engine import (
    dispose_engine,
    get_engine,
    resolve_url,
    session_scope,
    write_connection,
)
from hems.stores.appdb.migrate import alembic_config, current_revision, head_revision, migrate
from hems.stores.appdb.models import (
    Base,
    BuildingType,
    Challenge,
    ChallengeParticipant,
    DeviceStatus,
    DeviceType,
    EnergyUsageDaily,
    Household,
    HouseholdType,
    IotDevice,
    LedgerEntryType,
    Notification,
    PointsLedger,
    ProgramKind,
    Protocol,
    RefreshToken,
    Reward,
    RewardProgram,
    Role,
    User,
)
from hems.stores.appdb.upsert import upsert, upsert_devices, upsert_energy_usage_daily, upsert_households

__all__ = [
    "Base",
    "BuildingType",
    "Challenge",
    "ChallengeParticipant",
    "DeviceStatus",
    "DeviceType",
    "EnergyUsageDaily",
    "Household",
    "HouseholdType",
    "IotDevice",
    "LedgerEntryType",
    "Notification",
    "PointsLedger",
    "ProgramKind",
    "Protocol",
    "RefreshToken",
    "Reward",
    "RewardProgram",
    "Role",
    "User",
    "alembic_config",
    "current_revision",
    "dispose_engine",
    "get_engine",
    "head_revision",
    "migrate",
    "resolve_url",
    "session_scope",
    "upsert",
    "upsert_devices",
    "upsert_energy_usage_daily",
    "upsert_households",
    "write_connection",
]
