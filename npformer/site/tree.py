"""Where the site's sources are, and which files get a page.

The site is built from the installed package, not from a checkout: the Python
files are read from the ``npformer`` folder that is imported, and the three
Markdown files it renders (docs/derivations.md, docs/exercises.md, and
README.md for its "Figure 1, file by file" table), and the images they show,
are package data in the folder ``shipped-docs`` next to this module (a name
that is not a Python package's). In a checkout those are symbolic links to the
repository's own files, so an editable install reads them as they are edited;
``pip install .`` copies their contents into the installed package, so a site
builds where no checkout exists.

Every path the site shows, and every message about a broken reference, names a
file by its place in the repository ("npformer/ops/linear.py",
"docs/derivations.md"), whatever folder it was read from.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The pages: every file of these folders of the package, and these files.
PAGE_FOLDERS = ("ops", "model")
PAGE_FILES = ("decode/incremental.py", "train/optim.py", "train/schedule.py")

DERIVATIONS = "docs/derivations.md"
EXERCISES = "docs/exercises.md"
README = "README.md"


@dataclass(frozen=True)
class Tree:
    """The folders and files a site is built from.

    ``package`` is an ``npformer`` folder (its Python files are read, never
    imported); ``docs`` maps a repository path (``DERIVATIONS``,
    ``EXERCISES``, ``README``) to the file that holds it; ``images`` is the
    folder of the images they show (docs/img in a checkout). A test builds
    from a copy with one name changed by pointing a ``Tree`` at the copy."""
    package: Path
    docs: dict
    images: Path

    @classmethod
    def installed(cls) -> Tree:
        import npformer
        package = Path(npformer.__file__).resolve().parent
        shipped = Path(__file__).resolve().parent / "shipped-docs"
        return cls(package, {DERIVATIONS: shipped / "derivations.md", EXERCISES: shipped / "exercises.md",
                             README: shipped / "README.md"}, shipped / "img")

    @classmethod
    def checkout(cls, root: Path) -> Tree:
        """The tree of a repository laid out as npformer's: ``root/npformer``, ``root/docs``."""
        root = Path(root)
        return cls(root / "npformer", {DERIVATIONS: root / DERIVATIONS, EXERCISES: root / EXERCISES,
                                       README: root / README}, root / "docs" / "img")

    def read_doc(self, name: str) -> str | None:
        """The text of a shipped Markdown file; None where it is absent (a README not shipped)."""
        path = self.docs.get(name)
        if path is None or not Path(path).is_file():
            return None
        return Path(path).read_text(encoding="utf-8")

    def source_path(self, repo_path: str) -> Path:
        """The file behind a repository path of the package, "npformer/ops/linear.py"."""
        return self.package / Path(repo_path).relative_to("npformer")

    def has_source(self, repo_path: str) -> bool:
        return repo_path.startswith("npformer/") and self.source_path(repo_path).is_file()

    def page_sources(self) -> list:
        """The repository paths of the files that get a page, folder by folder."""
        paths = []
        for folder in PAGE_FOLDERS:
            paths += sorted(f"npformer/{folder}/{p.name}" for p in (self.package / folder).glob("*.py"))
        paths += [f"npformer/{f}" for f in PAGE_FILES if (self.package / f).is_file()]
        return paths

    def read_source(self, repo_path: str) -> str:
        return self.source_path(repo_path).read_text(encoding="utf-8")


def page_of(repo_path: str) -> str:
    """The site path of a source file's page: npformer/ops/linear.py -> ops/linear.html."""
    return str(Path(repo_path).relative_to("npformer").with_suffix(".html").as_posix())


def relative(from_page: str, to_page: str) -> str:
    """A relative URL from one site path to another ("ops/linear.html" -> "../derivations.html")."""
    up = from_page.count("/")
    return "../" * up + to_page
