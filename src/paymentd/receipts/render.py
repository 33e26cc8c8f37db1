"""A receipt as HTML (jinja2 templates, autoescaped), plain text and PDF (fpdf2).

The PDF embeds DejaVu Sans (Debian's fonts-dejavu-core) when it is installed, so
"€", "•" and non-Latin names print; without it, fpdf2's Latin-1 core font is used
and the characters it lacks are replaced rather than failing the receipt.
"""

from __future__ import annotations

import re
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from paymentd.receipts.receipt import Receipt
from paymentd.security_headers import csp_hash, html_csp

TEMPLATES = Path(__file__).parent / "templates"
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))

# Merchant details and descriptions are the merchant's (and their customers') text:
# escaped everywhere in HTML, including in .txt-named templates rendered into HTML.
_html = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
                    undefined=StrictUndefined, trim_blocks=False)
_text = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=False, undefined=StrictUndefined,
                    keep_trailing_newline=True)


# The receipt page's Content-Security-Policy: nothing from anywhere but the template's
# own inline <style>, allowed by the hash of its exact text (static: no Jinja inside).
HTML_CSP = html_csp(style_hashes=tuple(
    csp_hash(style) for style in re.findall(r"<style>(.*?)</style>", (TEMPLATES / "receipt.html").read_text(), re.S)
))


def html(receipt: Receipt) -> str:
    return _html.get_template("receipt.html").render(r=receipt, lang=receipt.locale.split("_")[0])


def text(receipt: Receipt) -> str:
    return _text.get_template("receipt.txt").render(r=receipt)


def _font_files() -> tuple[Path, Path] | None:
    for folder in FONT_DIRS:
        regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
        if regular.is_file() and bold.is_file():
            return regular, bold
    return None


class _Pdf(FPDF):
    def __init__(self) -> None:
        super().__init__(format="A4")
        fonts = _font_files()
        if fonts:
            self.add_font("Receipt", "", str(fonts[0]))
            self.add_font("Receipt", "B", str(fonts[1]))
            self.family, self.unicode = "Receipt", True
        else:
            self.family, self.unicode = "Helvetica", False

    def say(self, value: str) -> str:
        if self.unicode:
            return value
        # Core fonts are Latin-1: "•" and "−" have close stand-ins, the rest become "?".
        value = value.replace("•", "*").replace("−", "-").replace("€", "EUR ").replace("\u202f", " ")
        return value.encode("latin-1", "replace").decode("latin-1")

    def font(self, size: float, bold: bool = False) -> None:
        self.set_font(self.family, "B" if bold else "", size)

    def line_of(self, value: str, size: float = 10, bold: bool = False, height: float = 5.5) -> None:
        self.font(size, bold)
        self.multi_cell(0, height, self.say(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def row(self, left: str, middle: str, right: str, bold: bool = False) -> None:
        self.font(10, bold)
        width = self.epw
        self.cell(width * 0.35, 7, self.say(left))
        self.cell(width * 0.40, 7, self.say(middle))
        self.cell(width * 0.25, 7, self.say(right), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def pdf(receipt: Receipt) -> bytes:
    doc = _Pdf()
    doc.set_title(doc.say(f"Receipt {receipt.number} - {receipt.merchant.name}"))
    doc.set_author(doc.say(receipt.merchant.name))
    doc.set_creator("paymentd")
    doc.set_auto_page_break(True, margin=15)
    doc.add_page()
    doc.line_of(receipt.merchant.name, 18, bold=True, height=9)
    for line in (*receipt.merchant.address_lines, receipt.merchant.email, receipt.merchant.phone,
                 receipt.merchant.website, f"Tax ID: {receipt.merchant.tax_id}" if receipt.merchant.tax_id else None):
        if line:
            doc.line_of(line, 9, height=4.5)
    doc.ln(6)
    doc.line_of(receipt.money(receipt.amount), 24, bold=True, height=12)
    doc.line_of(f"Receipt #{receipt.number}", 11, bold=True)
    doc.line_of(f"Paid {receipt.when(receipt.paid_at)}", 10)
    doc.ln(4)
    customer = receipt.customer_name or ""
    if receipt.customer_email:
        customer = f"{customer} <{receipt.customer_email}>".strip()
    doc.line_of(f"Customer: {customer}")
    if receipt.description:
        doc.line_of(f"Description: {receipt.description}")
    doc.line_of(f"Payment method: {receipt.method.label or '-'}")
    doc.ln(4)
    doc.set_draw_color(200, 200, 200)
    doc.row("Item", "Date", "Amount", bold=True)
    doc.line(doc.l_margin, doc.get_y(), doc.l_margin + doc.epw, doc.get_y())
    doc.row("Payment", receipt.when(receipt.paid_at), receipt.money(receipt.amount))
    for refund in receipt.refunds:
        label = "Refund" if refund.status == "succeeded" else f"Refund ({refund.status})"
        doc.row(label, receipt.when(refund.created_at), f"−{receipt.money(refund.amount)}")
    doc.line(doc.l_margin, doc.get_y(), doc.l_margin + doc.epw, doc.get_y())
    doc.row("Net amount", "", receipt.money(receipt.net), bold=True)
    return bytes(doc.output())
