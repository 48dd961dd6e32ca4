"""Checks the built site (`mkdocs build`): every internal link and image resolves.

    python docs/check_site.py                      # site/; exit status 1 on any problem
    python docs/check_site.py --screenshots shots  # also PNGs of three pages, by Chromium

For every HTML page it reads the `href` of links and the `src` of images and
scripts that point inside the site, and fails when the file is missing (an
image also when it is empty) or when a `#fragment` names no element id of the
target page. Links to other sites are not followed (CI has no network).
`--screenshots` opens the index, the channel-attention page and the gallery
page in headless Chromium (a local browser is needed; CI does not run it).
"""

import argparse
import html.parser
import os
import subprocess
import sys
import tempfile
import urllib.parse

EXTERNAL = ("http:", "https:", "mailto:", "data:", "javascript:", "//")
SCREENSHOT_PAGES = ("index.html", "layers/channel/index.html", "gallery/index.html")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


class Page(html.parser.HTMLParser):
    """The ids and the internal references (tag, attribute, value) of one page."""

    def __init__(self):
        super().__init__()
        self.ids = set()
        self.references = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        for attribute in ("href", "src"):
            value = attrs.get(attribute)
            if value and not value.startswith(EXTERNAL):
                self.references.append((tag, attribute, value))


def parse(path):
    page = Page()
    with open(path, encoding="utf-8") as f:
        page.feed(f.read())
    return page


def target_file(site, page_path, url):
    """The file in `site` that `url` (relative to the page) points at, or None outside."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    if not path:
        return page_path
    base = site if path.startswith("/") else os.path.dirname(page_path)
    target = os.path.normpath(os.path.join(base, path.lstrip("/")))
    if os.path.isdir(target):
        target = os.path.join(target, "index.html")
    return target


def check(site):
    """A list of problems, one line each; empty when every reference resolves."""
    pages = {}
    for folder, _, files in os.walk(site):
        for name in files:
            if name.endswith(".html"):
                path = os.path.join(folder, name)
                pages[os.path.normpath(path)] = parse(path)
    if not pages:
        return [f"{site}: no HTML pages (was the site built?)"]
    problems = []
    for page_path, page in sorted(pages.items()):
        where = os.path.relpath(page_path, site)
        for tag, attribute, url in page.references:
            target = target_file(site, page_path, url)
            fragment = urllib.parse.urlsplit(url).fragment
            if not os.path.isfile(target):
                kind = "missing image" if tag == "img" else "broken link"
                problems.append(f"{where}: {kind} {attribute}={url!r}")
            elif tag == "img" and os.path.getsize(target) == 0:
                problems.append(f"{where}: empty image {url!r}")
            elif (
                fragment
                and target in pages
                and urllib.parse.unquote(fragment) not in pages[target].ids
            ):
                problems.append(f"{where}: no anchor #{fragment} in {url!r}")
    return problems


def screenshots(site, output_dir, chromium="chromium", width=1280, height=1600):
    """PNGs of SCREENSHOT_PAGES in headless Chromium; returns their paths."""
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    with tempfile.TemporaryDirectory() as profile:
        for page in SCREENSHOT_PAGES:
            path = os.path.join(output_dir, page.replace("/index.html", "").replace("/", "_"))
            path = os.path.abspath(os.path.splitext(path)[0] + ".png")
            url = "file://" + os.path.abspath(os.path.join(site, page))
            subprocess.run(
                [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
                + [f"--window-size={width},{height}", f"--screenshot={path}", url],
                check=True,
                capture_output=True,
                timeout=120,
            )
            paths.append(path)
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", nargs="?", default="site", help="The built site's folder.")
    parser.add_argument("--screenshots", help="Also save screenshots of three pages here.")
    parser.add_argument("--chromium", default="chromium", help="The Chromium executable.")
    args = parser.parse_args(argv)
    problems = check(args.site)
    for problem in problems:
        print(problem)
    print(f"{args.site}: {len(problems)} problem(s)")
    if args.screenshots:
        for path in screenshots(args.site, args.screenshots, args.chromium):
            print(f"screenshot: {path}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
