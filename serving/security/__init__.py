"""Security core of the serving API: passwords, tokens, field encryption, where secrets come from.

Routers do not import from here directly for authorization; they use the dependencies in
:mod:`serving.deps` (``current_user``, ``require_role``, ``household_access``).
"""

from serving.security.accounts import EmailTaken, authenticate, create_user, normalize_email
from serving.security.field_crypto import (
    FieldCipher,
    FieldDecryptError,
    open_user_field,
    reencrypt_personal_fields,
    seal_user_field,
)
from serving.security.passwords import hash_password, verify_password
from serving.security.refresh import (
    InvalidRefreshToken,
    issue_refresh_token,
    revoke_all_for_user,
    revoke_refresh_token,
    rotate_refresh_token,
)
from serving.security.secrets import check_configured, field_keys, jwt_secret
from serving.security.tokens import InvalidToken, Principal, create_access_token, decode_access_token

__all__ = [
    "EmailTaken",
    "FieldCipher",
    "FieldDecryptError",
    "InvalidRefreshToken",
    "InvalidToken",
    "Principal",
    "authenticate",
    "check_configured",
    "create_access_token",
    "create_user",
    "decode_access_token",
    "field_keys",
    "hash_password",
    "issue_refresh_token",
    "jwt_secret",
    "normalize_email",
    "open_user_field",
    "reencrypt_personal_fields",
    "revoke_all_for_user",
    "revoke_refresh_token",
    "rotate_refresh_token",
    "seal_user_field",
    "verify_password",
]
