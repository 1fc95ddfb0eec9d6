"""``--help`` examples ("Examples:" epilogs) of the most used commands, in one table.

Installed by :mod:`cas.cli.main` on each command as it is loaded (:func:`install`), like
the ASCII-digit options, so a command module need not know; a test checks that every
command named here exists and shows its examples.
"""

from __future__ import annotations

import click

from cas.console import examples_epilog as epilog

#: command path (without ``cas``) -> example lines (a comment after ``#``).
EXAMPLES: dict[str, tuple[str, ...]] = {
    "why": (
        "cas why --card 2256884759 --channel 12",
        "cas why --card 2256884759                     # every channel, one table",
        "cas why --card 2256884759 --channel sid:1012 --at 2026-11-01 --lang ru",
        "cas --json why --card 2256884759 --channel 12 --chip-id 5A100001",
    ),
    "diag visit": (
        "cas diag visit --stream home.ts --card-image card.img --rom-key-file rom.key \\",
        "    --chip-record box.chip --nvram box.nvram --vendor-key vendor.key --headend",
        "cas diag visit --stream home.ts --reader 'Virtual PCD 00 00' --headend \\",
        "    --report ticket.html --complaint 'E16 on 24' --city Almaty --lang ru",
    ),
    "diag stream": (
        "cas diag stream capture.ts",
        "cas diag stream udp://239.1.1.1:5000 --duration 30 --interface 192.0.2.10",
        "cas diag stream capture.ts --fail-on-alarm --json",
    ),
    "diag fingerprint": (
        "cas diag fingerprint restream.mp4        # which card's covert fingerprint",
        "cas diag fingerprint capture.ts --json",
    ),
    "osd send": (
        "cas osd send --all --id 5 --priority 3 --duration-s 20 'Service work tonight'",
        "cas osd send --card 2256884759 --id 6 --out osd.ts 'Please call us'",
        "cas osd send --group 12 --member 3 --id 7 --out osd.sections 'Group notice'",
    ),
    "osd fingerprint": (
        "cas osd fingerprint covert --card 2256884759 --duration-s 30 --out fp.ts",
        "cas osd fingerprint overt --all --x 80 --y 10 --duration-s 15",
    ),
    "pay": (
        "cas pay 5000 --card 2256884759",
        "cas pay 10.50 --account 000000000018 --method terminal",
        "cas pay 10 --card 2256884759 --method payment_card --package sport   # ATV+",
    ),
    "account create": (
        "cas account create --surname Abenov --name Nurlan --phone +77015550101",
        "cas --json account create --surname Aliyev --name Rashad --kind postpaid",
    ),
    "account show": (
        "cas account show 000000000018",
        "cas account show 2256884759                  # by card number",
    ),
    "account password": (
        "cas account password 000000000018             # prompts twice, hidden",
        "printf '%s\\n' \"$NEW\" | cas account password 000000000018 --password-stdin",
        "cas account password 2256884759 --reset       # prints a one-time password",
    ),
    "package subscribe": (
        "cas package subscribe 2256884759 start",
        "cas package subscribe 000000000018 sport",
    ),
    "card pair": (
        "cas card pair 2256884759 5A100001",
    ),
    "emm generate": (
        "cas emm generate --full -o emms.sections",
        "cas emm generate --incremental -o new.sections",
        "cas emm generate --full -o emms.ts --format ts",
        "cas emm generate --global-only --osd 'Happy new year' --osd-id 8 -o new-year.ts",
    ),
    "decode": (
        "cas decode scrambled.ts",
        "cas decode --as emm --keys operator.keys emms.sections",
        "echo '80 CA 01 01 00' | cas decode --as command-apdu",
    ),
    "operator use": (
        "cas operator use tvplus --clock-start 2026-11-01",
    ),
}


def install(name: str, top: click.Command) -> None:
    """Give ``top`` (the command ``cas <name>``) and its sub-commands their examples."""
    for path, lines in EXAMPLES.items():
        first, *rest = path.split()
        if first != name:
            continue
        command = top
        for word in rest:
            assert isinstance(command, click.Group), path
            command = command.commands[word]
        command.epilog = epilog(lines)
