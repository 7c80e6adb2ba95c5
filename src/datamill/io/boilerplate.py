"""Boilerplate removal before trafilatura, and the text of link-list pages it drops.

`prune(tree)` removes, in place, what is site furniture by its markup or by its shape, inside
the main container (`main_container`; everything outside it goes with `isolate`), or in the
whole page when no element marks the main content:

- by tag: `nav`, `aside`, `form`, `button`, `input`, `select`, `textarea`, `iframe`, and a
  `header` or `footer` outside the article;
- by ARIA role: navigation, banner, contentinfo, complementary, search, dialog;
- by a class or id token naming furniture: menus, sidebars, breadcrumbs, cookie and consent
  notices, newsletter and sign-up boxes, ads and sponsored blocks, related-links and share
  widgets, feedback widgets (`FURNITURE`, matched on whole tokens of the attribute split at
  spaces, `-` and `_`, so `header` does not match `subheader` nor `ad` match `load`);
- by shape: a small box holding an e-mail field or buttons (a sign-up or feedback widget), a
  small box labelled "Advertisement" or "Sponsored", and a list of links only, under a
  heading such as "Related articles" or "Read next"; a breadcrumb trail.

Nothing that holds the main container is removed, nothing inside it on a header or footer
rule (`OUTER_ONLY`), and nothing inside it that holds most of its text (a page wrapped in
one <form>, a content block whose class happens to say "top"). `render(container)` gives a
container's text one block per line, list items as "- item", for the pages trafilatura
under-extracts: those made mostly of links.
"""

from __future__ import annotations

import re
from itertools import islice
from typing import Any

DROP_TAGS = ("nav", "aside", "form", "button", "input", "select", "textarea", "iframe",
             "noscript", "template", "dialog")
DROP_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "dialog",
              "alertdialog"}
FURNITURE = re.compile(
    r"(?:^|[\s_-])(?:nav|navbar|navigation|menu|menus|menubar|breadcrumbs?|sidebar|sidenav|"
    r"side|leftcol|rightcol|masthead|topbar|top|bottom|cookies?|cookie\w*|consent|gdpr|"
    r"newsletter\w*|subscribe\w*|subscription|signup|optin|cta|promo\w*|ad|ads|adslot|"
    r"adunit|adbox|adsbygoogle|advert\w*|sponsor\w*|dfp|gpt|outbrain|taboola|related|"
    r"recommended|recommendations|share|sharing|social|feedback|popup|modal|"
    r"more|footer|header|banner)(?:$|[\s_\d-])")
OUTER_ONLY = re.compile(r"(?:^|[\s_-])(?:header|footer|top|bottom|banner|more|side)"
                        r"(?:$|[\s_\d-])")
AD_LABEL = re.compile(r"^\s*(?:advertisement|advertising|ad|ads|sponsored|sponsored content|"
                      r"promoted|anzeige|publicité|publicidad|werbung)\s*:?\s*$", re.I)
RELATED_HEADING = re.compile(r"^\s*(?:related\b|read (?:next|more)|you (?:might|may) also|"
                             r"more (?:from|on|articles|stories|posts|reading)|recommended|"
                             r"see more|popular (?:posts|articles|stories)|further reading:?$|"
                             r"trending)", re.I)
SEPARATORS = re.compile(r"^[\s»›>/|→·:]*[»›>/|→·:][\s»›>/|→·:]*$")
LABEL_TAGS = ("span", "p", "div", "strong", "b", "small", "em", "label", "h2", "h3", "h4",
              "h5", "h6", "a")
HEADING_TAGS = {"h2", "h3", "h4", "h5", "h6", "p", "strong", "b", "span", "div", "header"}
BOX_TAGS = {"div", "section", "aside", "p", "span", "ins", "table", "td", "li"}
SMALL_BOX = 400  # characters: a widget, not a section of the article
MOST = 0.5  # an element inside the main container holding more of its text is never removed
BLOCK_TAGS = {"p", "div", "section", "article", "main", "li", "dt", "dd", "h1", "h2", "h3",
              "h4", "h5", "h6", "pre", "blockquote", "tr", "table", "ul", "ol", "dl",
              "figure", "figcaption", "header", "footer", "body", "address", "details",
              "summary"}


def main_container(tree: Any) -> Any:
    """The element holding the page's main content: <main>, role=main, the only <article>,
    an element with id content or main; else <body>."""
    found = tree.xpath('(//main | //*[@role="main"])[1]')
    if found:
        return found[0]
    articles = tree.xpath("//article")
    if len(articles) == 1:
        return articles[0]
    found = tree.xpath('(//*[@id="content" or @id="main" or @id="main-content"])[1]')
    if found:
        return found[0]
    body = tree.find("body")
    return body if body is not None else tree


def text_length(element: Any) -> int:
    return len(" ".join(element.text_content().split()))


def _remove(element: Any) -> None:
    """Drop an element, keeping its tail text."""
    parent = element.getparent()
    if parent is None:
        return
    if element.tail and element.tail.strip():
        previous = element.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + element.tail
        else:
            parent.text = (parent.text or "") + element.tail
    parent.remove(element)


def _small_box(element: Any, container: Any) -> Any:
    """The largest ancestor-or-self of `element` that is a box of at most SMALL_BOX
    characters below the main container, or None."""
    box, node = None, element
    while node is not None and node is not container and node.tag in BOX_TAGS | {
            "a", "strong", "b", "em", "label", "form", "h2", "h3", "h4", "h5", "h6", "ul"}:
        if node.tag in BOX_TAGS:
            if text_length(node) > SMALL_BOX or node.find(".//pre") is not None \
                    or node.find(".//h1") is not None:
                break
            box = node
        node = node.getparent()
    return box


def _furniture(tree: Any, container: Any) -> list:
    protected = set(container.iterancestors()) | {container}
    inside = set(container.iter()) if container.tag != "body" else set()
    doomed = []
    for element in tree.iter("*"):
        if element in protected:
            continue
        tag = element.tag
        if tag in DROP_TAGS or (tag in ("header", "footer") and element not in inside):
            doomed.append(element)
            continue
        if element.get("role", "").lower() in DROP_ROLES:
            doomed.append(element)
            continue
        names = f"{element.get('class', '')} {element.get('id', '')}".lower()
        if names.strip() and FURNITURE.search(names):
            if element in inside and OUTER_ONLY.search(names) and not FURNITURE.search(
                    OUTER_ONLY.sub(" ", names)):
                continue
            doomed.append(element)
    return doomed


def _breadcrumbs(element: Any) -> bool:
    """Links only, separated by », ›, >, / or |, the last maybe followed by the page's name."""
    anchors = [child for child in element if child.tag == "a"]
    if len(anchors) < 2 or len(anchors) != len(element) or (element.text or "").strip():
        return False
    last = (anchors[-1].tail or "").strip()
    return all(SEPARATORS.match(a.tail or "") for a in anchors[:-1]) and (
        not last or (SEPARATORS.match(last[0]) is not None and len(last) <= 120))


def _related_heading(element: Any) -> bool:
    """A short heading-like element that announces related links (its first words only)."""
    if element is None or element.tag not in HEADING_TAGS or len(element) > 2:
        return False
    return RELATED_HEADING.match("".join(islice(element.itertext(), 4))[:80]) is not None


def _widgets(tree: Any, container: Any) -> list:
    """Small boxes with an e-mail field or buttons, ad labels, related-links lists,
    breadcrumb trails."""
    doomed = [e for e in tree.iter("div", "p", "span") if _breadcrumbs(e)]
    for field in tree.iter("input", "button"):
        if field.tag == "input" and field.get("type") != "email" and \
                "mail" not in field.get("name", ""):
            continue
        box = _small_box(field.getparent(), container)
        if box is not None:
            doomed.append(box)
    for label in tree.iter(*LABEL_TAGS):
        if label.text and len(label.text) < 40 and AD_LABEL.match(label.text) and \
                label.find("*") is None:
            box = _small_box(label.getparent(), container) if label.getparent() is not None \
                else None
            doomed.append(box if box is not None else label)
    for listing in tree.iter("ul", "ol"):
        heading = listing.getprevious()
        if not _related_heading(heading):
            parent = listing.getparent()
            heading = parent.getprevious() if parent is not None and len(parent) == 1 else None
            if not _related_heading(heading):
                continue
        items = listing.findall("li")
        if not items or any(text_length(li) != sum(text_length(a) for a in li.iter("a"))
                            for li in items):
            continue
        doomed += [heading, listing]
    return doomed


def prune(tree: Any) -> Any:
    """Remove boilerplate from `tree` in place; return the main container (when no element
    marks it, the deepest element holding nearly all of the text left)."""
    container = main_container(tree)
    scope = tree if container.tag == "body" else container  # the rest goes with `isolate`
    doomed = _furniture(scope, container) + _widgets(scope, container)
    protected = set(container.iterancestors()) | {container}
    total = text_length(container)
    for element in doomed:
        if element in protected:
            continue
        if total and text_length(element) > MOST * total and _within(element, container):
            continue  # most of the main text is no widget: a wrong guess, keep it
        _remove(element)
    return container if container.tag != "body" else _dominant(container)


def _within(element: Any, container: Any) -> bool:
    return any(ancestor is container for ancestor in element.iterancestors())


def _dominant(element: Any, share: float = 0.85) -> Any:
    """Descend while one child holds at least `share` of the text."""
    total = text_length(element)
    while total:
        sizes = [(text_length(c), c) for c in element if isinstance(c.tag, str)]
        size, child = max(sizes, key=lambda pair: pair[0], default=(0, None))
        if child is None or size < share * total or child.tag in ("ul", "ol", "dl", "table",
                                                                  "p", "pre"):
            return element
        element, total = child, size
    return element


def isolate(tree: Any, container: Any) -> Any:
    """`tree` with a body holding only `container` (when that is not the body already), as
    an <article> (so that trafilatura reads it as the main content)."""
    body = tree.find("body")
    if container.tag == "body" or body is None:
        return tree
    if container.tag in ("div", "section", "td"):
        container.tag = "article"
    tail, container.tail = container.tail, None
    for child in list(body):
        body.remove(child)
    body.text = None
    body.append(container)
    container.tail = tail if tail and not tail.strip() else None
    return tree


def link_share(container: Any) -> float:
    """The share of a container's text that is link text."""
    total = text_length(container)
    linked = sum(text_length(a) for a in container.iter("a"))
    return linked / total if total else 0.0


def render(container: Any, tables: bool = True, links: bool = False) -> str:
    """Text of a container, one block per line, list items as '- item'; tables as
    'cell | cell' rows unless `tables` is off; links as Markdown `[text](url)` if `links`."""
    lines: list[str] = []
    current: list[str] = []

    def flush() -> None:
        text = " ".join("".join(current).split())
        if text:
            lines.append(text)
        current.clear()

    def walk(element: Any) -> None:
        tag = element.tag if isinstance(element.tag, str) else ""
        block = tag in BLOCK_TAGS
        if tag in ("script", "style") or (tag == "table" and not tables):
            return
        if links and tag == "a" and element.get("href"):
            text = " ".join(element.text_content().split())
            if text:
                current.append(f"[{text}]({element.get('href')})")
            return
        if block:
            flush()
            if tag == "li":
                current.append("- ")
        if tag == "pre":
            text = element.text_content().strip("\n")
            if text:
                lines.append(text)
        else:
            if element.text:
                current.append(element.text)
            for child in element:
                walk(child)
                if child.tail:
                    current.append(child.tail)
            if tag in ("td", "th"):
                current.append(" | ")
        if block:
            flush()

    walk(container)
    flush()
    return "\n".join(line for line in lines if line.strip("-| "))
