"""The `file` connector: CSV, XLSX, JSON and JSON-lines exports.

Built for what Chinese HR and party systems really export: GB18030/GBK or UTF-8 (with or without
BOM) CSV, spreadsheets with merged title rows ("XX公司党员花名册", "导出时间：…") above the real
header, ID numbers and codes that must stay text. Every value of a CSV/XLSX record is a string
(or None for an empty cell) and each record carries `_row`, its 1-based row number in the file,
so quarantine reasons can say "row 57". Files are streamed in pages, never loaded whole — except
a `.json` document, which is one value and is parsed at once (use `.jsonl` for huge data).

    roster:
      connector: file
      path: exports/党员花名册.xlsx        # or files: {party_orgs: a.csv, party_members: b.xlsx}
      provides: [party_members]
      sheet: 0                            # xlsx: sheet name or 0-based index (default: first)
      header_contains: [姓名, 公民身份号码]  # optional; header_row: 3 to fix it outright
"""
from __future__ import annotations

import codecs
import csv
import json
import math
import re
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from itertools import chain, islice
from pathlib import Path
from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from connectors.base import KINDS, BaseSourceSchema, Connector, Page, SourceError
from connectors.http import extract_records
from connectors.registry import register

TABULAR_SUFFIXES = (".csv", ".txt", ".tsv", ".xlsx", ".xlsm")
JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
# How many rows from the top may hold titles before the header.
HEADER_SCAN_ROWS = 30
HEADER_SCORE_SHARE = 0.8
ROW_KEY = "_row"
_CHUNK = 1 << 20


def _valid_encoding(name: str) -> None:
    try:
        codecs.lookup(name)
    except LookupError:
        raise ValidationError(f"unknown encoding {name!r}") from None


class FileSourceSchema(BaseSourceSchema):
    """The `file` source block."""

    path = fields.String(load_default=None)
    files = fields.Dict(keys=fields.String(validate=validate.OneOf(KINDS)), values=fields.String(),
                        load_default=None)
    sheet = fields.Raw(load_default=None)
    encoding = fields.String(load_default=None, validate=_valid_encoding)
    delimiter = fields.String(load_default=None, validate=validate.Length(equal=1))
    header_row = fields.Integer(load_default=None, validate=validate.Range(min=1))
    header_contains = fields.List(fields.String(), load_default=None)
    records_path = fields.String(load_default=None)
    page_size = fields.Integer(load_default=1000, validate=validate.Range(min=1))

    @validates_schema
    def _path_or_files(self, data: dict[str, Any], **_: Any) -> None:
        provides = data.get("provides") or []
        if bool(data.get("path")) == bool(data.get("files")):
            raise ValidationError({"path": ["give either path (one file) or files: {kind: path}"]})
        if data.get("path") and len(provides) != 1:
            raise ValidationError({"provides": ["a single path provides exactly one kind; "
                                                "use files: {kind: path} for several"]})
        if data.get("files") and set(data["files"]) != set(provides):
            raise ValidationError({"files": [f"needs one file for each kind of provides "
                                             f"({', '.join(provides)}) and no other"]})
        sheet = data.get("sheet")
        if sheet is not None and (isinstance(sheet, bool) or not isinstance(sheet, (str, int))):
            raise ValidationError({"sheet": ["a sheet name or a 0-based index"]})


# --------------------------------------------------------------------------- text and cells


def _decodes_strictly(path: Path, encoding: str) -> bool:
    """Whether the whole file decodes in `encoding`, read in chunks (constant memory)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    try:
        with path.open("rb") as stream:
            while chunk := stream.read(_CHUNK):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def detect_encoding(path: Path) -> str:
    """The text encoding of `path`: UTF-16 by BOM, else UTF-8 (BOM or not) if the whole file is
    valid UTF-8, else GB18030 (a superset of GBK/GB2312, what Chinese Excel writes), else
    charset-normalizer's best guess. Strict UTF-8 first because GB18030 would also accept
    most UTF-8 byte sequences, as mojibake."""
    with path.open("rb") as stream:
        head = stream.read(4)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    for encoding in ("utf-8-sig", "gb18030"):
        if _decodes_strictly(path, encoding):
            return encoding
    from charset_normalizer import from_path  # only for the rare file that is neither

    best = from_path(path).best()
    if best is None:
        raise SourceError(f"cannot tell the text encoding of {path}; set encoding",
                          error_class="config")
    return best.encoding


def _sniff_delimiter(sample: str) -> str:
    """Tab when tabs outnumber commas (Excel's "Unicode text"), else comma, else ; or |.

    Counting beats csv.Sniffer here: title rows above the header and `;`-separated list fields
    such as `covers` confuse its consistency test."""
    counts = {d: sample.count(d) for d in ",\t;|"}
    if counts["\t"] > counts[","]:
        return "\t"
    return next((d for d in ",;|" if counts[d]), ",")


def cell_text(value: Any) -> str | None:
    """A spreadsheet value as the text a person sees: dates "YYYY-MM-DD", integral numbers
    without ".0" (codes and ID numbers), stripped strings; None for an empty cell."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat(sep=" ")
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, timedelta):
        return str(value)
    text = str(value).strip()
    return text or None


_SPACE_RE = re.compile(r"\s+")
_CJK_GAP_RE = re.compile(r"(?<=[^\x00-\x7f]) | (?=[^\x00-\x7f])")


def _header_name(cell: str | None) -> str | None:
    """A header cell as a column name. Wrapped header text ("入党\\n日期") is common in Excel:
    whitespace collapses, and vanishes next to Chinese characters."""
    if cell is None:
        return None
    return _CJK_GAP_RE.sub("", _SPACE_RE.sub(" ", cell)) or None


def _header_keys(cells: list[str | None]) -> list[str]:
    """Column names: unnamed columns become column_N (1-based), repeats get _2, _3…"""
    keys: list[str] = []
    seen: dict[str, int] = {}
    for index, cell in enumerate(cells, 1):
        key = _header_name(cell) or f"column_{index}"
        seen[key] = seen.get(key, 0) + 1
        keys.append(key if seen[key] == 1 else f"{key}_{seen[key]}")
    return keys


def _header_score(cells: list[str | None]) -> int:
    """Distinct cells that look like column names (a letter, no digit): a header names every
    column, a title row names one (repeated in every cell by some exporters of merged cells),
    data rows hold ID numbers, dates, phone numbers and blanks."""
    return len({c for c in cells if c and any(ch.isalpha() for ch in c)
                and not any(ch.isdigit() for ch in c)})


Row = tuple[int, list[str | None]]


def _records_from_rows(rows: Iterator[Row], *, header_row: int | None,
                       header_contains: list[str] | None, where: str) -> Iterator[dict[str, Any]]:
    """Find the header among the first rows, then yield one dict per non-empty row below it."""
    scan = max(HEADER_SCAN_ROWS, header_row or 0)
    head = [row for row in islice(rows, scan) if any(row[1])]
    if not head:
        return
    if header_row is not None:
        index = next((i for i, (number, _) in enumerate(head) if number == header_row), None)
        if index is None:
            raise SourceError(f"header_row {header_row} of {where} is empty or past the end",
                              error_class="config")
    elif header_contains:
        wanted = {_header_name(name) for name in header_contains}
        index = next((i for i, (_, cells) in enumerate(head)
                      if wanted <= {_header_name(c) for c in cells}), None)
        if index is None:
            raise SourceError(
                f"no row among the first {scan} of {where} holds all of "
                f"{', '.join(header_contains)} (header_contains)", error_class="config")
    else:
        # The header precedes the data and scores about as high as the best row (a data row
        # may outscore it where some columns are unnamed): take the first row within 80 %.
        scores = [_header_score(cells) for _, cells in head]
        threshold = math.ceil(max(scores) * HEADER_SCORE_SHARE)
        index = next(i for i, score in enumerate(scores) if score >= threshold)
    keys = _header_keys(head[index][1])
    for number, cells in chain(head[index + 1:], rows):
        if not any(cells):
            continue
        record: dict[str, Any] = dict.fromkeys(keys)
        for position, value in enumerate(cells):
            if position < len(keys):
                record[keys[position]] = value
            elif value is not None:  # a ragged row: keep what it holds, nothing is dropped
                record[f"column_{position + 1}"] = value
        record[ROW_KEY] = number
        yield record


# --------------------------------------------------------------------------- readers


def _csv_rows(path: Path, encoding: str | None, delimiter: str | None) -> Iterator[Row]:
    encoding = encoding or detect_encoding(path)
    with path.open("r", encoding=encoding, newline="") as stream:
        if delimiter is None:
            delimiter = "\t" if path.suffix.lower() == ".tsv" else _sniff_delimiter(stream.read(65536))
            stream.seek(0)
        reader = csv.reader(stream, delimiter=delimiter)
        number = 0
        try:
            # The record index, not the physical line: it matches the row Excel shows, also
            # when a quoted cell spans lines.
            for number, cells in enumerate(reader, 1):
                yield number, [(c.strip() or None) for c in cells]
        except csv.Error as exc:
            raise SourceError(f"{path.name} row {number + 1}: {exc}", error_class="protocol") from None


def _xlsx_rows(path: Path, sheet: str | int | None) -> Iterator[Row]:
    from openpyxl import load_workbook  # imported here: CSV-only installs start faster

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile/KeyError/InvalidFileException alike
        raise SourceError(f"{path} is not a readable .xlsx file ({type(exc).__name__}); "
                          f"save it again as .xlsx or .csv", error_class="protocol") from None
    try:
        if sheet is None:
            worksheet = workbook.worksheets[0]
        elif isinstance(sheet, int) and 0 <= sheet < len(workbook.worksheets):
            worksheet = workbook.worksheets[sheet]
        elif isinstance(sheet, str) and sheet in workbook.sheetnames:
            worksheet = workbook[sheet]
        else:
            raise SourceError(f"{path.name} has no sheet {sheet!r}; it has "
                              f"{', '.join(workbook.sheetnames)}", error_class="config")
        # Exporters often write a wrong <dimension> (e.g. A1:A1); read what is really there.
        worksheet.reset_dimensions()
        for number, values in enumerate(worksheet.iter_rows(values_only=True), 1):
            yield number, [cell_text(v) for v in values]
    finally:
        workbook.close()


def _json_records(path: Path, encoding: str | None,
                  records_path: str | None) -> Iterator[dict[str, Any]]:
    with path.open("r", encoding=encoding or detect_encoding(path)) as stream:
        try:
            document = json.load(stream)
        except ValueError as exc:
            raise SourceError(f"{path.name} is not valid JSON: {exc}", error_class="protocol") from None
    for number, record in enumerate(extract_records(document, records_path or "", path.name), 1):
        yield {**record, ROW_KEY: number}


def _jsonl_records(path: Path, encoding: str | None) -> Iterator[dict[str, Any]]:
    with path.open("r", encoding=encoding or detect_encoding(path)) as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise SourceError(f"{path.name} line {number} is not valid JSON: {exc}",
                                  error_class="protocol") from None
            if not isinstance(record, dict):
                raise SourceError(f"{path.name} line {number} is a {type(record).__name__}, "
                                  f"not an object", error_class="protocol")
            yield {**record, ROW_KEY: number}


# --------------------------------------------------------------------------- the connector


@register
class FileConnector(Connector):
    """Reads records of each kind from one file."""

    type_name: ClassVar[str] = "file"
    config_schema: ClassVar[type[Schema]] = FileSourceSchema

    def path_for(self, kind: str) -> Path:
        """The file of `kind`, resolved against base_dir; SourceError("config") if absent."""
        files = self.config.get("files") or {}
        raw = files.get(kind) if files else (self.config["path"] if kind in self.kinds else None)
        if raw is None:
            raise SourceError(f"no file configured for {kind}", error_class="config",
                              source=self.name, kind=kind)
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = self.base_dir / path
        if not path.is_file():
            raise SourceError(f"file not found: {path}", error_class="config", source=self.name,
                              kind=kind, detail={"path": str(path)})
        suffix = path.suffix.lower()
        if suffix not in TABULAR_SUFFIXES + JSON_SUFFIXES:
            raise SourceError(f"cannot read {path.name}: supported are "
                              f"{', '.join(TABULAR_SUFFIXES + JSON_SUFFIXES)}",
                              error_class="config", source=self.name, kind=kind)
        return path

    def records(self, path: Path) -> Iterator[dict[str, Any]]:
        """All records of the file at `path` (from `path_for`), one at a time."""
        cfg = self.config
        suffix = path.suffix.lower()
        if suffix == ".json":
            return _json_records(path, cfg.get("encoding"), cfg.get("records_path"))
        if suffix in JSON_SUFFIXES:
            return _jsonl_records(path, cfg.get("encoding"))
        if suffix in (".xlsx", ".xlsm"):
            rows = _xlsx_rows(path, cfg.get("sheet"))
        else:
            rows = _csv_rows(path, cfg.get("encoding"), cfg.get("delimiter"))
        return _records_from_rows(rows, header_row=cfg.get("header_row"),
                                  header_contains=cfg.get("header_contains"), where=path.name)

    def read(self, kind: str, *, since: str | None = None) -> Iterator[Page]:
        # A file has no "changed since": every read is a full pull (supports_incremental False).
        size = self.config.get("page_size") or 1000
        try:
            path = self.path_for(kind)
            records = self.records(path)
            number = 0
            while batch := list(islice(records, size)):
                number += 1
                yield Page(batch, info={"page": number, "file": path.name,
                                        "rows": [batch[0][ROW_KEY], batch[-1][ROW_KEY]]})
        except SourceError as exc:
            exc.source = exc.source or self.name
            exc.kind = exc.kind or kind
            raise
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"cannot read the {kind} file: {exc}", error_class="config",
                              source=self.name, kind=kind) from None

    def check(self) -> None:
        for kind in self.kinds:
            self.path_for(kind)
