"""Every ``cas`` command, in one table: name -> short help and the modules that define it.

``cas --help`` and shell completion read this table and import no command module; running
a command imports only the modules of its row (:class:`cas.cli.lazy.LazyGroup`).  Adding
a command is one line here: its name, its short help (the first sentence of its help, as
``cas --help`` shows it) and ``"cas.cli.<module>:register"`` — a function that adds the
command to the group it is given, or ``"module:attr"`` naming the command object itself.
Several modules may add sub-commands to one group (``cas card``): list each, in the order
they should register (the first one's group help is the group's).

``tests/unit/cli/test_registry.py`` fails when a row's help drifts from the command's own
or when a command module is missing from the table.
"""

from __future__ import annotations

from cas.cli.lazy import LazyCommand, lazy

_BILLING = "cas.cli.billing:register"

COMMANDS: dict[str, LazyCommand] = {
    "account": lazy("Personal accounts: holders, devices, verification.",
                    "cas.cli.account:register", "cas.cli.account_password:register"),
    "balance": lazy("Balance, financial block, suspension and open promised payment.",
                    _BILLING),
    "box": lazy("Set-top boxes (Chip IDs from the chipset vendor).",
                "cas.cli.box:register", "cas.cli.factory:register"),
    "bulk": lazy("Bulk import and export (CSV, JSON lines).", "cas.cli.bulk:register"),
    "card": lazy("Smart cards: personalise, serve over PC/SC (vpcd).",
                 "cas.cli.card:register", "cas.cli.card_admin:register"),
    "catalog": lazy("Channels and packages (lineup files).", _BILLING),
    "clock": lazy("The simulation clock: show, set, advance (runs what falls due).", _BILLING),
    "decode": lazy("Decode SOURCE: hex bytes, a file path, or '-' / nothing for stdin.",
                   "cas.cli.decode:register"),
    "demo": lazy("Build a head-end, subscribers in every seed situation, EMMs, ECMs and a "
                 "scrambled stream; run a box per subscriber; exit 0 only if every box agrees "
                 "with `cas why`.", "cas.cli.demo:register"),
    "diag": lazy("Field-engineer diagnostics",
                 "cas.cli.diag:register", "cas.cli.diag_card:register"),
    "ecm": lazy("ECM generation for test benches.", "cas.cli.ecm:register"),
    "ecmg": lazy("ECMG: answer a scrambler's CW_provisions with ECMs (SimulCrypt).",
                 "cas.cli.simulcrypt:register"),
    "emm": lazy("EMM generation for the subscriber base.",
                "cas.cli.emm:register", "cas.cli.emm_refresh:register"),
    "emmg": lazy("EMMG: feed EMMs to a mux (SimulCrypt).", "cas.cli.simulcrypt:register"),
    "headend": lazy("The live head-end: scrambled playout over IP.",
                    "cas.cli.headend:register", "cas.cli.headend_ops:register"),
    "keys": lazy("Operator key file: create it, show fingerprints.",
                 "cas.cli.factory:register", "cas.cli.keys:register"),
    "kit": lazy("STB conformance kit: build kits from scenarios, grade a box against them.",
                "cas.cli.kit:register"),
    "lookup": lazy("Find the personal account number from the box's Chip ID and the card "
                   "number (MTS).", _BILLING),
    "mux": lazy("A minimal SimulCrypt mux for EMMG tests.", "cas.cli.simulcrypt:register"),
    "operator": lazy("The operator profile this store runs (the seed rules).", _BILLING),
    "osd": lazy("On-screen messages and fingerprints (docs/osd.md).", "cas.cli.osd:register"),
    "package": lazy("Subscribe to, switch, extend and list packages.", _BILLING),
    "pay": lazy("Top up an account: AMOUNT in major units (e.g.", _BILLING),
    "ppv": lazy("Pay-per-view: events, pre-booking, purses, purchase reports.",
                "cas.cli.ppv:register"),
    "promise": lazy("Take a promised payment (short credit).", _BILLING),
    "promo": lazy("Promo codes.", _BILLING),
    "renewal": lazy("Turn auto-renewal on or off (no prepaid day is lost either way).",
                    _BILLING),
    "resume": lazy("Resume a suspended service now (the paid days left are kept).", _BILLING),
    "scs": lazy("Act as a scrambler (SCS) against an ECMG.", "cas.cli.simulcrypt:register"),
    "serve": lazy("Run the operator API and the personal-account portal.",
                  "cas.cli.serve:register"),
    "sms": lazy('Pay by SMS: "ntvplus <card-or-contract-number> <amount>" (NTV Plus).',
                _BILLING),
    "statement": lazy("The payment statement: every balance change, with opening and closing "
                      "balances.", _BILLING),
    "stream": lazy("Transport streams for set-top-box test benches.", "cas.cli.stream:register"),
    "suspend": lazy("Suspend the service temporarily (holiday).", _BILLING),
    "why": lazy("Explain, from the head-end's records, why CHANNEL is open or locked on CARD "
                "(every channel without --channel).", "cas.cli.why:register"),
}
