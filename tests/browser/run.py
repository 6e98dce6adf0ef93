"""Runs the console's browser journeys (tests/browser/journeys.py) against a running server.

    python tests/browser/run.py --base http://127.0.0.1:PORT --axe .../axe.min.js --shots DIR [NAME…]

Exits 1 if a journey failed or axe found a serious or critical violation on any screen.
"""

import argparse
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from journeys import JOURNEYS  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the server, e.g. http://127.0.0.1:8080")
    parser.add_argument("--axe", required=True, help="axe-core's axe.min.js")
    parser.add_argument("--shots", required=True, help="directory for the screenshots")
    parser.add_argument("only", nargs="*", help="run only the journeys with these names")
    args = parser.parse_args()
    base = args.base.rstrip("/")
    harness.configure(args.axe, args.shots)

    journeys = [j for j in JOURNEYS if not args.only or j.__name__ in args.only]
    unknown = set(args.only) - {j.__name__ for j in JOURNEYS}
    if unknown:
        print(f"no such journey: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2

    failed = []
    with harness.browser() as browser:
        print(f"Chromium {browser.version}, {len(journeys)} journeys against {base}")
        for journey in journeys:
            name = journey.__name__
            started = time.monotonic()
            try:
                journey(browser, base)
                result = "ok"
            except Exception:
                failed.append(name)
                shots = harness.failure_shots(name)
                result = "FAILED\n" + traceback.format_exc().rstrip()
                if shots:
                    result += "\n  screenshots: " + ", ".join(str(s) for s in shots)
            finally:
                harness.close_pages()
            print(f"{name} ... {result} ({time.monotonic() - started:.1f}s)", flush=True)

    report = harness.axe_report()
    if report:
        print(f"\naxe-core: {len(report)} serious or critical violations:")
        for line in report:
            print(f"  {line}")
    if failed:
        print(f"\nfailed journeys: {', '.join(failed)}")
    print(f"\nscreenshots in {Path(args.shots).resolve()}")
    return 1 if failed or report else 0


if __name__ == "__main__":
    sys.exit(main())
