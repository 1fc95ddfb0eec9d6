"""Key ladder and message protection (DESIGN §2, ``docs/keys.md``).

The only user of ``cryptography.hazmat`` and of libdvbcsa.  Callers ask for a recipe ("seal
this EMM body", "wrap these CWs for this pairing"); they never pick a mode or an IV.
Randomness (``rng``) and time are passed in.
"""

from __future__ import annotations

from cas.crypto.aead import NONCE_LEN, TAG_LEN, aead_open, aead_seal, new_nonce
from cas.crypto.cissa import Cissa
from cas.crypto.csa2 import Csa2
from cas.crypto.cw import (
    CISSA_CW_LEN,
    CSA2_CW_LEN,
    Parity,
    generate_cw,
    is_reduced_cw,
    reduce_cw,
)
from cas.crypto.keys import (
    DEFAULT_CHIPSET_VENDOR_ID,
    DEFAULT_KEY_FILE_NAME,
    ENV_OPERATOR_KEY,
    KEY_LEN,
    Key,
    OperatorKeys,
    Purpose,
    Rng,
    default_key_path,
    derive_cuks,
    derive_cuks_concat,
    kdf,
    load_operator_keys,
)
from cas.crypto.pin import PIN_HASH_LEN, pin_hash, verify_pin
from cas.crypto.wrap import (
    CHIP_BLOB_LEN,
    WRAPPED_CWS_LEN,
    WRAPPED_KEY_LEN,
    chip_blob,
    open_chip_blob,
    unwrap_cws,
    unwrap_key,
    wrap_cws,
    wrap_key,
)
from cas.errors import AuthenticationError, CryptoError

__all__ = [
    "CHIP_BLOB_LEN",
    "CISSA_CW_LEN",
    "CSA2_CW_LEN",
    "DEFAULT_CHIPSET_VENDOR_ID",
    "DEFAULT_KEY_FILE_NAME",
    "ENV_OPERATOR_KEY",
    "KEY_LEN",
    "NONCE_LEN",
    "PIN_HASH_LEN",
    "TAG_LEN",
    "WRAPPED_CWS_LEN",
    "WRAPPED_KEY_LEN",
    "AuthenticationError",
    "Cissa",
    "CryptoError",
    "Csa2",
    "Key",
    "OperatorKeys",
    "Parity",
    "Purpose",
    "Rng",
    "aead_open",
    "aead_seal",
    "chip_blob",
    "default_key_path",
    "derive_cuks",
    "derive_cuks_concat",
    "generate_cw",
    "is_reduced_cw",
    "kdf",
    "load_operator_keys",
    "new_nonce",
    "open_chip_blob",
    "pin_hash",
    "reduce_cw",
    "unwrap_cws",
    "unwrap_key",
    "verify_pin",
    "wrap_cws",
    "wrap_key",
]
