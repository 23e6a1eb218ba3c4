"""Code tables: every spelling a source uses → the canonical value of the unified record.

National codes follow reference/standards.md (political status GB/T 4762, sex GB/T 2261.1,
ethnicity GB/T 3304, education GB/T 4658); enumerations use the lower-case English words of
DESIGN.md; performance grades keep the canonical Chinese grade (优秀 … 不合格).

A `CodeTable` answers an exact spelling with one dict lookup. Only on a miss does it fold the
value (Unicode NFKC — full-width letters and digits, ideographic spaces — then drop all
whitespace and case-fold) and look again, so the common path costs no normalization. A value
that is neither a known spelling nor already a canonical value raises `MappingError`
("unknown value '…'"): an unknown spelling is a quarantine reason, never a guess.

Tables are declared grouped by canonical value (``{"01": ["中共党员", "党员", …]}``); every
canonical value also accepts itself, and for the two-digit political status and ethnicity codes
the unpadded form ("1" for "01") is accepted too, because spreadsheets drop leading zeros. (Not
for education: a lone "1" or "2" there is no safe guess.)
"""
from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from mappings.base import MappingError


def fold(text: str) -> str:
    """The spelling-insensitive form of a value: NFKC, no whitespace, case-folded."""
    return "".join(unicodedata.normalize("NFKC", text).split()).casefold()


class CodeTable:
    """A lookup from source spellings to canonical values."""

    def __init__(self, name: str, spellings: Mapping[str, Any]) -> None:
        """`spellings` maps each source spelling to its canonical value.

        Raises ValueError when two spellings fold to the same form but mean different values
        (e.g. an inline map with both "A" and "a"): the table would otherwise depend on order.
        """
        self.name = name
        self._exact: dict[str, Any] = {}
        self._folded: dict[str, Any] = {}
        self._canonical: set[Any] = set()
        self._display: dict[Any, str] | None = None  # built on first display_name()
        for spelling, value in spellings.items():
            self._add(str(spelling), value)
        for value in list(self._canonical):
            if isinstance(value, str):
                self._add(value, value)

    def _add(self, spelling: str, value: Any) -> None:
        key = fold(spelling)
        if key in self._folded and self._folded[key] != value:
            raise ValueError(
                f"'{spelling}' means both {self._folded[key]!r} and {value!r} in table {self.name}"
            )
        self._exact[spelling] = value
        self._folded[key] = value
        self._canonical.add(value)

    @property
    def values(self) -> frozenset[Any]:
        """The canonical values this table produces."""
        return frozenset(self._canonical)

    def display_name(self, value: Any) -> str | None:
        """The canonical value's first Chinese spelling in the table (the national name), for
        showing a code to people; None when the table has none."""
        if self._display is None:
            self._display = {}
            for spelling, canonical in self._exact.items():
                if isinstance(canonical, str) and not spelling.isascii():
                    self._display.setdefault(canonical, spelling)
        return self._display.get(value)

    def get(self, value: Any, default: Any = None) -> Any:
        """The canonical value for `value`, or `default` when the spelling is unknown."""
        if value.__class__ is str:
            hit = self._exact.get(value, _MISS)
            if hit is not _MISS:
                return hit
            return self._folded.get(fold(value), default)
        # Non-strings come from JSON, SQL or spreadsheet cells: True, 1, 1.0.
        if isinstance(value, bool):
            return value if value in self._canonical else self.get(str(value), default)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int):
            return self.get(str(value), default)
        return default

    def lookup(self, value: Any) -> Any:
        """The canonical value for `value` (element-wise for a list); MappingError if unknown."""
        if value.__class__ is str:
            hit = self._exact.get(value, _MISS)
            if hit is not _MISS:
                return hit
        elif isinstance(value, list):
            return [self.lookup(item) for item in value]
        hit = self.get(value, _MISS)
        if hit is _MISS:
            raise MappingError(f"unknown value '{str(value)[:40]}'", value=value)
        return hit


_MISS = object()


def _grouped(groups: Mapping[Any, Iterable[str]]) -> dict[str, Any]:
    """Invert ``{canonical: [spellings]}`` into ``{spelling: canonical}``."""
    return {spelling: value for value, spellings in groups.items() for spelling in spellings}


def _numbered(groups: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """Like `_grouped` for two-digit national codes, adding the unpadded code ("1" for "01")."""
    spellings = _grouped(groups)
    for code in groups:
        spellings[code] = code
        spellings[str(int(code))] = code
    return spellings


# 政治面貌 GB/T 4762-1984.
POLITICAL_STATUS = CodeTable("political_status", _numbered({
    "01": ["中国共产党党员", "中共党员", "共产党员", "党员", "正式党员"],
    "02": ["中国共产党预备党员", "中共预备党员", "预备党员"],
    "03": ["中国共产主义青年团团员", "共青团员", "团员"],
    "04": ["中国国民党革命委员会会员", "民革会员", "民革党员"],
    "05": ["中国民主同盟盟员", "民盟盟员"],
    "06": ["中国民主建国会会员", "民建会员"],
    "07": ["中国民主促进会会员", "民进会员"],
    "08": ["中国农工民主党党员", "农工党党员"],
    "09": ["中国致公党党员", "致公党党员"],
    "10": ["九三学社社员", "九三社员"],
    "11": ["台湾民主自治同盟盟员", "台盟盟员"],
    "12": ["无党派民主人士", "无党派人士", "无党派"],
    "13": ["群众"],
}))

# 性别 GB/T 2261.1-2003. Vendor codes that differ (Weaver SOAP `sex` "1" = female) are not
# here: a preset translates those with an inline map.
GENDER = CodeTable("gender", _grouped({
    "0": ["0", "未知", "未知的性别"],
    "1": ["1", "男", "男性", "M", "male"],
    "2": ["2", "女", "女性", "F", "female"],
    "9": ["9", "未说明", "未说明的性别"],
}))

# 民族 GB/T 3304-1991, in code order; "其他" and "外国血统" are the customary 97 and 98.
_ETHNIC_NAMES = (
    "汉族 蒙古族 回族 藏族 维吾尔族 苗族 彝族 壮族 布依族 朝鲜族 满族 侗族 瑶族 白族 土家族 "
    "哈尼族 哈萨克族 傣族 黎族 傈僳族 佤族 畲族 高山族 拉祜族 水族 东乡族 纳西族 景颇族 柯尔克孜族 "
    "土族 达斡尔族 仫佬族 羌族 布朗族 撒拉族 毛南族 仡佬族 锡伯族 阿昌族 普米族 塔吉克族 怒族 "
    "乌孜别克族 俄罗斯族 鄂温克族 德昂族 保安族 裕固族 京族 塔塔尔族 独龙族 鄂伦春族 赫哲族 "
    "门巴族 珞巴族 基诺族"
).split()
ETHNICITY = CodeTable("ethnicity", _numbered({
    **{f"{number:02d}": [name, name[:-1]] for number, name in enumerate(_ETHNIC_NAMES, 1)},
    "97": ["其他", "其它", "其他族"],
    "98": ["外国血统", "外国血统中国籍人士"],
}))

# 学历 GB/T 4658-2006: level codes (x0) with the names sources use, plus the detailed codes.
EDUCATION = CodeTable("education", _grouped({
    "10": ["10", "研究生", "研究生教育"],
    "11": ["11", "博士", "博士研究生", "博士研究生毕业"],
    "12": ["12", "博士研究生结业"],
    "13": ["13", "博士研究生肄业"],
    "14": ["14", "硕士", "硕士研究生", "硕士研究生毕业"],
    "15": ["15", "硕士研究生结业"],
    "16": ["16", "硕士研究生肄业"],
    "17": ["17", "研究生班毕业"],
    "18": ["18", "研究生班结业"],
    "19": ["19", "研究生班肄业"],
    "20": ["20", "本科", "大学本科", "大学", "大本", "大学本科教育"],
    "21": ["21", "大学本科毕业", "本科毕业"],
    "22": ["22", "大学本科结业"],
    "23": ["23", "大学本科肄业"],
    "28": ["28", "大学普通班毕业"],
    "30": ["30", "大专", "专科", "大学专科", "大学专科教育", "高职", "高等职业教育"],
    "31": ["31", "大学专科毕业", "大专毕业"],
    "32": ["32", "大学专科结业"],
    "33": ["33", "大学专科肄业"],
    "40": ["40", "中专", "中等专科", "中职", "技校", "职高", "中技", "中等职业教育"],
    "41": ["41", "中等专科毕业", "中专毕业"],
    "42": ["42", "中等专科结业"],
    "43": ["43", "中等专科肄业"],
    "44": ["44", "职业高中毕业"],
    "45": ["45", "职业高中结业"],
    "46": ["46", "职业高中肄业"],
    "47": ["47", "技工学校毕业"],
    "48": ["48", "技工学校结业"],
    "49": ["49", "技工学校肄业"],
    "60": ["60", "高中", "普通高中", "普通高级中学", "普通高级中学教育"],
    "61": ["61", "普通高中毕业", "高中毕业"],
    "62": ["62", "普通高中结业"],
    "63": ["63", "普通高中肄业"],
    "70": ["70", "初中", "初级中学", "初级中学教育"],
    "71": ["71", "初中毕业"],
    "73": ["73", "初中肄业"],
    "80": ["80", "小学", "小学教育"],
    "81": ["81", "小学毕业"],
    "83": ["83", "小学肄业"],
    "90": ["90", "其他", "其它"],
}))

EMPLOYMENT_STATUS = CodeTable("employment_status", _grouped({
    "active": ["在职", "正式", "在岗", "正式员工", "regular"],
    "probation": ["试用", "试用期", "试用延期"],
    "temporary": ["临时", "临时工", "劳务", "劳务派遣", "实习", "实习生"],
    "dismissed": ["解聘", "辞退", "terminated"],
    "left": ["离职", "辞职", "已离职", "resigned"],
    "retired": ["退休", "离休", "已退休"],
    "invalid": ["无效"],
}))

ORG_UNIT_KIND = CodeTable("org_unit_kind", _grouped({
    "company": ["公司", "子公司", "分公司", "总公司", "集团", "集团公司", "分支机构"],
    "department": ["部门", "处室", "中心", "事业部", "部", "处", "车间"],
    "team": ["班组", "小组", "科室", "科", "组", "班", "工段"],
}))

ORG_UNIT_STATUS = CodeTable("org_unit_status", _grouped({
    "active": ["正常", "启用", "有效", "在用"],
    "dissolved": ["撤销", "已撤销", "停用", "已停用", "封存", "注销", "canceled", "cancelled"],
}))

PARTY_ORG_KIND = CodeTable("party_org_kind", _grouped({
    "committee": ["党委", "基层党委", "党委员会", "机关党委"],
    "general_branch": ["党总支", "总支部", "党总支部", "总支"],
    "branch": ["党支部", "支部", "联合党支部"],
    "group": ["党小组"],
}))

MEMBER_CATEGORY = CodeTable("member_category", _grouped({
    "full": ["正式党员", "正式", "中共党员"],
    "probationary": ["预备党员", "预备", "中共预备党员"],
}))

MEMBER_STATUS = CodeTable("member_status", _grouped({
    "active": ["正常", "在册"],
    "transferred_out": ["转出", "已转出", "组织关系转出"],
    "deceased": ["去世", "死亡", "已故", "病故", "逝世"],
    "removed": ["出党", "除名", "开除党籍", "退党"],
}))

# 绩效等级: the canonical value is the Chinese grade; letter grades and the civil-service style
# 称职 grades are spellings of it.
PERFORMANCE_GRADE = CodeTable("performance_grade", _grouped({
    "优秀": ["A", "优"],
    "良好": ["B", "良"],
    "合格": ["C", "称职"],
    "基本合格": ["基本称职"],
    "不合格": ["D", "不称职"],
}))

# 组织生活 activity types (reference/party-rules.md "Organizational life").
ACTIVITY_TYPE = CodeTable("activity_type", _grouped({
    "member_meeting": ["支部党员大会", "党员大会"],
    "committee_meeting": ["支部委员会会议", "支委会", "支委会会议", "支部委员会"],
    "group_meeting": ["党小组会", "党小组会议"],
    "party_lecture": ["党课"],
    "theme_day": ["主题党日", "主题党日活动"],
    "org_life_meeting": ["组织生活会"],
    "democratic_review": ["民主评议党员", "民主评议"],
}))

# 党费 categories not paid by after-tax pay (reference/party-rules.md "Dues"): 0.2 yuan a month
# for students, the unemployed and members on subsistence allowance; pension rates for retirees.
DUES_CATEGORY = CodeTable("dues_category", _grouped({
    "student": ["学生", "在校学生"],
    "unemployed": ["失业", "下岗", "失业人员", "下岗失业"],
    "subsistence": ["低保", "最低生活保障", "享受低保", "困难"],
    "retiree": ["离退休", "退休", "离休"],
}))

BOOLEAN = CodeTable("boolean", _grouped({
    True: ["是", "有", "true", "t", "yes", "y", "1", "√"],
    False: ["否", "无", "false", "f", "no", "n", "0", "×"],
}))

# Code tables by the name a spec's `map:` uses.
TABLES: dict[str, CodeTable] = {
    table.name: table
    for table in (
        POLITICAL_STATUS, GENDER, ETHNICITY, EDUCATION, EMPLOYMENT_STATUS, ORG_UNIT_KIND,
        ORG_UNIT_STATUS, PARTY_ORG_KIND, MEMBER_CATEGORY, MEMBER_STATUS, PERFORMANCE_GRADE,
        BOOLEAN, ACTIVITY_TYPE, DUES_CATEGORY,
    )
}
