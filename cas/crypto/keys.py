"""Keys and the operator key ladder (DESIGN §2, ``docs/keys.md``).

Every key is AES-128.  All head-end keys are derived from the operator master key (OMK) with
the NIST SP 800-108 key-based KDF in counter mode with AES-128-CMAC as the PRF (SP 800-108r1
§4.1), formatted so that the PRF input is exactly one AES block::

    [i]_1 = 0x01 || Label (8 bytes) || 0x00 || Context (u32, big-endian) || [L]_2 = 0x0080

``Label`` is ``b"cas-sim"`` followed by one purpose byte (:class:`Purpose`) and ``Context`` is
the card serial, shared address, ECM key index or 0.  This is exactly what
``cryptography``'s ``KBKDFCMAC(rlen=1, llen=2, location=BeforeFixed)`` computes; the unit
tests pin it against that class.

Why one block: AES-CMAC of a single complete block M is ``AES_K(M xor K1)`` (RFC 4493 §2.4,
K1 the first CMAC subkey), so :func:`derive_cuks` can derive a million card keys with one
AES-ECB ``update()`` over a 16 MB buffer — the EMM generator's fast path — and still give
bit-identical results to the standard KDF.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import sys
import time
import tomllib
from array import array
from collections.abc import Callable, Mapping, Sequence
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFCMAC, CounterLocation, Mode

from cas.errors import CryptoError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: Source of randomness: ``rng(n)`` returns ``n`` random bytes (default :func:`os.urandom`).
Rng = Callable[[int], bytes]

KEY_LEN = 16
#: Environment variable holding the OMK as 32 hex digits (alternative to a key file).
ENV_OPERATOR_KEY = "CAS_OPERATOR_KEY"
#: Environment variable holding chipset vendor keys as ``id=hex[,id=hex...]`` (optional).
ENV_CHIPSET_VENDOR_KEYS = "CAS_CHIPSET_VENDOR_KEYS"
#: Vendor id of the simulated chipset vendor whose key ``cas keys init`` creates.
DEFAULT_CHIPSET_VENDOR_ID = 0x0001
KEY_FILE_FORMAT = 1
#: File name of the operator key file inside the data dir (``cas keys init`` default).
DEFAULT_KEY_FILE_NAME = "operator-keys.toml"

_LABEL_PREFIX = b"cas-sim"


class Purpose(IntEnum):
    """Last byte of the SP 800-108 Label: which key of the ladder is derived."""

    CUK = 0x01  # card unique key, context = card serial
    GROUP = 0x02  # group key, context = shared address (u24)
    GLOBAL = 0x03  # global EMM key, context = 0
    ECM = 0x04  # ECM key, context = key index (u8)
    TRANSPORT = 0x05  # card-factory transport key, context = 0
    PIN = 0x06  # PIN-hash key, derived from a CUK, context = 0
    PPV_REPORT = 0x10  # PPV purchase-report key, derived from a CUK, context = 0


class Key:
    """A 16-byte AES key.  ``repr``/``str`` show only a label and a fingerprint.

    Keys refuse to be pickled (so they never end up in a cache, queue or log in clear); pass
    ``key.raw()`` explicitly across a process boundary if you really must.  ``copy`` returns
    the same immutable object.  Equality is constant-time.
    """

    __slots__ = ("_aead", "_label", "_raw")

    def __init__(self, raw: bytes, *, label: str = "key") -> None:
        if not isinstance(raw, bytes | bytearray | memoryview):
            raise CryptoError(f"{label}: key material must be bytes").with_id(
                "crypto.key_material_bytes", label=label)
        raw = bytes(raw)
        if len(raw) != KEY_LEN:
            raise CryptoError(f"{label}: key must be {KEY_LEN} bytes, got {len(raw)}").with_id(
                "crypto.key_bytes", label=label, key_len=KEY_LEN, n=len(raw))
        self._raw = raw
        self._label = label
        self._aead: AESGCM | None = None

    # --- access ---------------------------------------------------------------------------------
    def raw(self) -> bytes:
        """The key bytes.  Called inside ``cas/crypto``, by the EMM generator (key bytes that go
        into PAIR and ECM_KEY_UPDATE commands) and by the two key-file writers (ROM key,
        vendor key); docs/architecture.md lists them."""
        return self._raw

    @property
    def label(self) -> str:
        return self._label

    def fingerprint(self) -> str:
        """First 8 hex digits of SHA-256(label || key): safe to log and print."""
        return hashlib.sha256(self._label.encode() + self._raw).hexdigest()[:8]

    def with_label(self, label: str) -> Key:
        return Key(self._raw, label=label)

    def _aesgcm(self) -> AESGCM:
        # Built once per key: constructing AESGCM costs about as much as one seal.
        if self._aead is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead = AESGCM(self._raw)
        return self._aead

    # --- never show the bytes --------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"Key(label={self._label!r}, fingerprint={self.fingerprint()!r})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return format(repr(self), spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Key):
            return NotImplemented
        return hmac.compare_digest(self._raw, other._raw)

    def __hash__(self) -> int:
        return hash(hashlib.sha256(b"cas-sim key hash" + self._raw).digest()[:8])

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise CryptoError(f"{self._label}: keys cannot be pickled").with_id(
            "crypto.keys_cannot_pickled", label=self._label)

    def __copy__(self) -> Key:
        return self

    def __deepcopy__(self, memo: object) -> Key:
        return self


def _check_u32(value: int, what: str, limit: int = 0xFFFFFFFF) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
        raise CryptoError(f"{what} out of range 0..{limit:#x}").with_id(
            "crypto.out_range", what=what, limit=f"{limit:#x}")
    return value


def _fixed_input(purpose: int, context: int) -> bytes:
    """The 16-byte SP 800-108 PRF input for iteration 1 (see module docstring)."""
    return (b"\x01" + _LABEL_PREFIX + bytes([purpose]) + b"\x00"
            + context.to_bytes(4, "big") + b"\x00\x80")


def kdf(key: Key, purpose: Purpose, context: int = 0, *, label: str | None = None) -> Key:
    """SP 800-108 counter-mode KDF with AES-CMAC: one 128-bit key for (purpose, context)."""
    _check_u32(context, "KDF context")
    derived = KBKDFCMAC(
        algorithm=algorithms.AES, mode=Mode.CounterMode, length=KEY_LEN, rlen=1, llen=2,
        location=CounterLocation.BeforeFixed,
        label=_LABEL_PREFIX + bytes([purpose]), context=context.to_bytes(4, "big"), fixed=None,
    ).derive(key.raw())
    return Key(derived, label=label or purpose.name.lower())


def _cmac_subkey1(key: bytes) -> int:
    """RFC 4493 §2.3: K1 = dbl(AES_K(0^128))."""
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    l_block = int.from_bytes(enc.update(bytes(16)) + enc.finalize(), "big")
    k1 = (l_block << 1) & ((1 << 128) - 1)
    if l_block >> 127:
        k1 ^= 0x87
    return k1


def derive_cuks_concat(omk: Key | OperatorKeys, serials: Sequence[int]) -> bytes:
    """All CUKs for ``serials`` concatenated (16 bytes each) — one AES-ECB call.

    Equal to ``b"".join(OperatorKeys.cuk(s).raw() for s in serials)``: a single-block
    AES-CMAC is ``AES_K(M xor K1)``, so we build every PRF input M, xor the whole buffer with
    K1 repeated (one big-int xor) and encrypt it in ECB mode.
    """
    master = omk.master if isinstance(omk, OperatorKeys) else omk
    n = len(serials)
    if n == 0:
        return b""
    try:
        ser = array("I", serials)  # unsigned int: 4 bytes on every platform we run on
    except (OverflowError, TypeError) as exc:
        raise CryptoError("card serial out of range 0..0xffffffff").with_id(
            "crypto.card_serial_out_range") from exc
    if sys.byteorder == "little":
        ser.byteswap()
    ser_bytes = ser.tobytes()
    buf = bytearray(_fixed_input(Purpose.CUK, 0) * n)
    for j in range(4):  # scatter the big-endian serials into bytes 10..13 of each block
        buf[10 + j :: 16] = ser_bytes[j::4]
    k1 = _cmac_subkey1(master.raw()).to_bytes(16, "big")
    size = 16 * n
    xored = (int.from_bytes(buf, "big") ^ int.from_bytes(k1 * n, "big")).to_bytes(size, "big")
    enc = Cipher(algorithms.AES(master.raw()), modes.ECB()).encryptor()
    return enc.update(xored) + enc.finalize()


def derive_cuks(omk: Key | OperatorKeys, serials: Sequence[int]) -> list[bytes]:
    """Bulk CUK derivation for the EMM generator: raw 16-byte keys, in ``serials`` order."""
    out = derive_cuks_concat(omk, serials)
    return [out[i : i + 16] for i in range(0, len(out), 16)]


def _parse_hex_key(text: object, what: str) -> Key:
    if not isinstance(text, str):
        raise CryptoError(f"{what}: expected a hex string").with_id(
            "crypto.expected_hex_string", what=what)
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raise CryptoError(f"{what}: not valid hex").with_id(
            "crypto.not_valid_hex", what=what) from None
    return Key(raw, label=what)


def _parse_vendor_id(text: str) -> int:
    try:
        if not text.isascii():  # int(text, 0) also reads "１０"
            raise ValueError(text)
        value = int(text, 0)
    except ValueError:
        raise CryptoError(f"chipset vendor id {text!r} is not a number (ASCII digits, or "
                          "hex with 0x)").with_id(
            "crypto.chipset_vendor_id_not", text=f"{text!r}") from None
    return _check_u32(value, "chipset vendor id", 0xFFFF)


class OperatorKeys:
    """The operator's secrets: the OMK and the chipset vendors' keys.

    Loaded from the operator key file written by ``cas keys init`` (TOML, or JSON with the
    same fields) or from ``$CAS_OPERATOR_KEY``.  Every other head-end key is derived.
    """

    __slots__ = ("_cache", "created_s", "master", "vendor_keys")

    def __init__(self, master: Key, *, vendor_keys: Mapping[int, Key] | None = None,
                 created_s: int | None = None) -> None:
        self.master = master.with_label("omk")
        self.vendor_keys: dict[int, Key] = {
            vid: k.with_label(f"chipset vendor {vid:04X}")
            for vid, k in (vendor_keys or {}).items()
        }
        self.created_s = created_s
        self._cache: dict[tuple[int, int], Key] = {}

    def __repr__(self) -> str:
        return f"OperatorKeys(omk={self.master.fingerprint()!r})"

    __str__ = __repr__

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise CryptoError("operator keys cannot be pickled").with_id(
            "crypto.operator_keys_cannot_pickled")

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def generate(cls, rng: Rng = os.urandom, *, now_s: int | None = None) -> OperatorKeys:
        """Fresh OMK and a key for the simulated chipset vendor 0x0001."""
        return cls(
            Key(rng(KEY_LEN), label="omk"),
            vendor_keys={DEFAULT_CHIPSET_VENDOR_ID: Key(rng(KEY_LEN))},
            created_s=int(time.time()) if now_s is None else now_s,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorKeys:
        """``$CAS_OPERATOR_KEY`` (32 hex digits) and optional ``$CAS_CHIPSET_VENDOR_KEYS``."""
        env = os.environ if environ is None else environ
        value = env.get(ENV_OPERATOR_KEY)
        if not value:
            raise CryptoError(f"{ENV_OPERATOR_KEY} is not set").with_id(
                "crypto.not_set", env_operator_key=ENV_OPERATOR_KEY)
        vendors: dict[int, Key] = {}
        for item in filter(None, (p.strip() for p in env.get(ENV_CHIPSET_VENDOR_KEYS, "").split(","))):
            vid, sep, hexkey = item.partition("=")
            if not sep:
                raise CryptoError(f"{ENV_CHIPSET_VENDOR_KEYS}: expected id=hex items").with_id(
                    "crypto.expected_id_hex_items",
                    env_chipset_vendor_keys=ENV_CHIPSET_VENDOR_KEYS)
            vendors[_parse_vendor_id(vid)] = _parse_hex_key(hexkey, "chipset vendor key")
        return cls(_parse_hex_key(value, ENV_OPERATOR_KEY), vendor_keys=vendors)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OperatorKeys:
        if data.get("format") != KEY_FILE_FORMAT:
            raise CryptoError(f"operator key file: unsupported format {data.get('format')!r}").with_id(
                "crypto.operator_key_file_unsupported", value=f"{data.get('format')!r}")
        vendors_raw = data.get("chipset_vendor_keys", {})
        if not isinstance(vendors_raw, Mapping):
            raise CryptoError("operator key file: chipset_vendor_keys must be a table").with_id(
                "crypto.operator_key_file_chipset")
        vendors = {_parse_vendor_id(str(k)): _parse_hex_key(v, "chipset vendor key")
                   for k, v in vendors_raw.items()}
        created = data.get("created_s")
        if created is not None and not isinstance(created, int):
            raise CryptoError("operator key file: created_s must be an integer").with_id(
                "crypto.operator_key_file_created")
        return cls(_parse_hex_key(data.get("omk"), "omk"), vendor_keys=vendors,
                   created_s=created)

    def to_dict(self) -> dict[str, Any]:
        """The key file content — contains key bytes in hex: write it only to a 0600 file."""
        data: dict[str, Any] = {"format": KEY_FILE_FORMAT}
        if self.created_s is not None:
            data["created_s"] = self.created_s
        data["omk"] = self.master.raw().hex()
        data["chipset_vendor_keys"] = {
            f"0x{vid:04X}": k.raw().hex() for vid, k in sorted(self.vendor_keys.items())
        }
        return data

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> OperatorKeys:
        """Read a key file (TOML; JSON if it starts with ``{``)."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CryptoError(f"operator key file {p} not found (run `cas keys init`)").with_id(
                "operator_keys_missing", path=str(p)) from None
        except (OSError, UnicodeError) as exc:
            raise CryptoError(f"cannot read operator key file {p}: {exc.__class__.__name__}").with_id(
                "crypto.cannot_read_operator_key", p=p, name__=exc.__class__.__name__) from None
        try:
            data = json.loads(text) if text.lstrip().startswith("{") else tomllib.loads(text)
        except (ValueError, tomllib.TOMLDecodeError):
            # The parser's message may quote the file's content, i.e. key bytes: drop it.
            raise CryptoError(f"operator key file {p} is not valid TOML/JSON").with_id(
                "operator_keys_invalid", path=str(p)) from None
        if not isinstance(data, dict):
            raise CryptoError(f"operator key file {p} is not a table").with_id(
                "crypto.operator_key_file_not", p=p)
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike[str], *, force: bool = False) -> Path:
        """Write the TOML key file with mode 0600; refuse to overwrite unless ``force``."""
        import tomli_w

        p = Path(path)
        body = ("# cas-sim operator key file. SECRET: keep it mode 0600 and out of backups "
                "you do not trust.\n" + tomli_w.dumps(self.to_dict()))
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
        if p.parent and not p.parent.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(p, flags, 0o600)
        except FileExistsError:
            raise CryptoError(f"{p} already exists (use --force to overwrite)").with_id(
                "exists_use_force", path=str(p)) from None
        except OSError as exc:
            raise CryptoError(f"cannot write {p}: {exc.strerror}").with_id(
                "crypto.cannot_write", p=p, strerror=exc.strerror) from None
        try:
            os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)  # also when --force reused an old file
            os.write(fd, body.encode("utf-8"))
        finally:
            os.close(fd)
        return p

    # --- the ladder --------------------------------------------------------------------------
    def _derive(self, purpose: Purpose, context: int, label: str) -> Key:
        cached = self._cache.get((purpose, context))
        if cached is None:
            cached = kdf(self.master, purpose, context, label=label)
            if len(self._cache) < 4096:
                self._cache[(purpose, context)] = cached
        return cached

    def cuk(self, serial: int) -> Key:
        """Card unique key of card ``serial`` (u32)."""
        _check_u32(serial, "card serial")
        return kdf(self.master, Purpose.CUK, serial, label="cuk")

    def cuks(self, serials: Sequence[int]) -> list[bytes]:
        return derive_cuks(self, serials)

    def group_key(self, shared_address: int) -> Key:
        """Group key of shared address ``shared_address`` (u24)."""
        _check_u32(shared_address, "shared address", 0xFFFFFF)
        return self._derive(Purpose.GROUP, shared_address, "group key")

    def global_key(self) -> Key:
        """Key of global EMMs (every card)."""
        return self._derive(Purpose.GLOBAL, 0, "global key")

    def ecm_key(self, index: int, *, epoch: int = 0) -> Key:
        """ECM key with key index ``index`` (u8, carried in every ECM).

        The index wraps after 256 rotations; ``epoch`` (u24, kept by the head-end, bumped at
        each wrap) makes a reused index get a fresh key.  KDF context = ``epoch << 8 | index``.
        """
        _check_u32(index, "ECM key index", 0xFF)
        _check_u32(epoch, "ECM key epoch", 0xFFFFFF)
        return self._derive(Purpose.ECM, epoch << 8 | index, f"ecm key {index}")

    def transport_key(self) -> Key:
        """Card-factory transport key: wraps the CUK in personalisation records."""
        return self._derive(Purpose.TRANSPORT, 0, "transport key")

    def chipset_vendor_key(self, vendor_id: int) -> Key:
        """The key a chipset vendor wraps each chip's CSK under in its Chip ID records."""
        try:
            return self.vendor_keys[vendor_id]
        except KeyError:
            raise CryptoError(
                f"no key for chipset vendor {vendor_id:04X} in the operator keys").with_id(
                "no_vendor_key", vendor=f"{vendor_id:04X}") from None

    def fingerprints(self) -> dict[str, str]:
        """Fingerprints of the stored and the operator-wide derived keys (safe to print)."""
        out = {
            "omk": self.master.fingerprint(),
            "global_key": self.global_key().fingerprint(),
            "transport_key": self.transport_key().fingerprint(),
            "ecm_key[0]": self.ecm_key(0).fingerprint(),
        }
        for vid, k in sorted(self.vendor_keys.items()):
            out[f"chipset_vendor_key[{vid:04X}]"] = k.fingerprint()
        return out


def default_key_path(data_dir: str | os.PathLike[str]) -> Path:
    """Where ``cas keys init`` puts the key file by default."""
    return Path(data_dir) / DEFAULT_KEY_FILE_NAME


def load_operator_keys(path: str | os.PathLike[str] | None = None, *,
                       data_dir: str | os.PathLike[str] | None = None,
                       environ: Mapping[str, str] | None = None) -> OperatorKeys:
    """The operator keys a command should use.

    An explicit ``path`` wins; then ``$CAS_OPERATOR_KEY``; then ``<data_dir>/operator-keys.toml``.
    """
    if path is not None:
        return OperatorKeys.load(path)
    env = os.environ if environ is None else environ
    if env.get(ENV_OPERATOR_KEY):
        return OperatorKeys.from_env(env)
    if data_dir is None:
        raise CryptoError(f"no operator keys: pass a key file or set {ENV_OPERATOR_KEY}").with_id(
            "no_operator_keys", env=ENV_OPERATOR_KEY)
    return OperatorKeys.load(default_key_path(data_dir))
