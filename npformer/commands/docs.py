"""``npformer docs --out DIR``: the annotated code, the derivations and the exercises as a static site."""
import json
import os

from npformer.errors import UserError


def cmd_docs(args) -> int:
    from npformer import site
    absent = site.missing()
    if absent:
        raise UserError(f"docs needs {', '.join(absent)}, which {'is' if len(absent) == 1 else 'are'} not "
                        "installed: pip install 'npformer[docs]'")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError(f"--out {args.out!r} is a file; expected a folder for the site")
    from npformer.site.build import build_site
    result = build_site(args.out)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"wrote {len(result['pages'])} pages to {result['out']} in {result['seconds']:.1f} s; "
              f"open {os.path.join(result['out'], 'index.html')}, or copy the folder to any static host")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("docs", help="build the annotated code, derivations and exercises as a static site",
                       description="Build a static site: one page per file of npformer/ops and npformer/model "
                                   "(and decode/incremental.py, train/optim.py, train/schedule.py), each "
                                   "docstring and comment beside the code it explains, with links to the "
                                   "derivation of each function and to its exercise; docs/derivations.md and "
                                   "docs/exercises.md with their mathematics; and an index with Figure 1, "
                                   "each box a link. Offline: no JavaScript, nothing fetched, relative links "
                                   "only. Needs the docs extra: pip install 'npformer[docs]'.")
    p.add_argument("--out", default="site", metavar="DIR",
                   help="the folder to write the site into (default: site); serve it as it is, or open "
                        "DIR/index.html")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: the folder, the pages written and the seconds taken")
    p.set_defaults(func=cmd_docs)
