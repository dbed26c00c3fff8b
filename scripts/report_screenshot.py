"""Screenshot a vlguard HTML report with headless chromium, for the README (docs/report-screenshot.png).

    make demo   # or: .venv/bin/vlguard demo
    .venv/bin/python scripts/report_screenshot.py runs/demo/report/report.html docs/report-screenshot.png

Takes the top of the report (summary, settings, before/after, charts) and the first examples, stacked
into one image with a reduced palette so that it stays small (< 300 KB).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("report", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--examples-height", type=int, default=780)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    full = args.out.with_suffix(".full.png")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": 800}, device_scale_factor=1)
        page.goto(args.report.resolve().as_uri())
        charts = page.locator("#charts").bounding_box()
        examples = page.locator("#examples").bounding_box()
        page.screenshot(path=str(full), full_page=True)
        browser.close()
    assert charts is not None and examples is not None
    image = Image.open(full).convert("RGB")
    full.unlink()
    top = image.crop((0, 0, args.width, int(charts["y"] + charts["height"])))
    bottom = image.crop((0, int(examples["y"]), args.width, int(examples["y"]) + args.examples_height))
    gap = 12
    stacked = Image.new("RGB", (args.width, top.height + gap + bottom.height), (255, 255, 255))
    stacked.paste(top, (0, 0))
    for x in range(0, args.width, 12):  # a dashed line where the middle of the report was cut out
        stacked.paste((180, 180, 180), (x, top.height + 5, x + 6, top.height + 7))
    stacked.paste(bottom, (0, top.height + gap))
    stacked.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB, {stacked.width}x{stacked.height})")


if __name__ == "__main__":
    main()
