"""Code tables: every common spelling → the national code or canonical word; unknown → error."""
from __future__ import annotations

import pytest

from mappings.base import MappingError
from mappings.codes import (
    BOOLEAN, EDUCATION, EMPLOYMENT_STATUS, ETHNICITY, GENDER, MEMBER_CATEGORY, MEMBER_STATUS,
    ORG_UNIT_KIND, ORG_UNIT_STATUS, PARTY_ORG_KIND, PERFORMANCE_GRADE, POLITICAL_STATUS, TABLES,
    CodeTable, fold,
)

# GB/T 3304-1991 written out independently of the implementation's table.
ETHNIC_CODES = {
    "01": "汉族", "02": "蒙古族", "03": "回族", "04": "藏族", "05": "维吾尔族", "06": "苗族",
    "07": "彝族", "08": "壮族", "09": "布依族", "10": "朝鲜族", "11": "满族", "12": "侗族",
    "13": "瑶族", "14": "白族", "15": "土家族", "16": "哈尼族", "17": "哈萨克族", "18": "傣族",
    "19": "黎族", "20": "傈僳族", "21": "佤族", "22": "畲族", "23": "高山族", "24": "拉祜族",
    "25": "水族", "26": "东乡族", "27": "纳西族", "28": "景颇族", "29": "柯尔克孜族", "30": "土族",
    "31": "达斡尔族", "32": "仫佬族", "33": "羌族", "34": "布朗族", "35": "撒拉族", "36": "毛南族",
    "37": "仡佬族", "38": "锡伯族", "39": "阿昌族", "40": "普米族", "41": "塔吉克族", "42": "怒族",
    "43": "乌孜别克族", "44": "俄罗斯族", "45": "鄂温克族", "46": "德昂族", "47": "保安族",
    "48": "裕固族", "49": "京族", "50": "塔塔尔族", "51": "独龙族", "52": "鄂伦春族", "53": "赫哲族",
    "54": "门巴族", "55": "珞巴族", "56": "基诺族", "97": "其他", "98": "外国血统",
}


@pytest.mark.parametrize(("code", "name"), ETHNIC_CODES.items())
def test_ethnicity_every_name_code_and_short_name(code: str, name: str) -> None:
    assert ETHNICITY.lookup(name) == code
    assert ETHNICITY.lookup(code) == code
    assert ETHNICITY.lookup(str(int(code))) == code  # a spreadsheet dropped the leading zero
    if name.endswith("族"):
        assert ETHNICITY.lookup(name[:-1]) == code


def test_ethnicity_has_exactly_the_standard_codes() -> None:
    assert ETHNICITY.values == frozenset(ETHNIC_CODES)


@pytest.mark.parametrize(("spelling", "code"), [
    ("中共党员", "01"), ("中国共产党党员", "01"), ("党员", "01"), ("正式党员", "01"), ("01", "01"),
    ("1", "01"), (1, "01"), (1.0, "01"), ("中共预备党员", "02"), ("预备党员", "02"), ("2", "02"),
    ("共青团员", "03"), ("团员", "03"), ("中国共产主义青年团团员", "03"), ("民革会员", "04"),
    ("民盟盟员", "05"), ("民建会员", "06"), ("民进会员", "07"), ("农工党党员", "08"),
    ("致公党党员", "09"), ("九三学社社员", "10"), ("台盟盟员", "11"), ("无党派人士", "12"),
    ("群众", "13"), ("13", "13"), (" 群众 ", "13"), ("群　众", "13"), ("１３", "13"),
])
def test_political_status(spelling: object, code: str) -> None:
    assert POLITICAL_STATUS.lookup(spelling) == code


@pytest.mark.parametrize(("spelling", "code"), [
    ("男", "1"), ("女", "2"), ("未知", "0"), ("未说明", "9"), ("M", "1"), ("f", "2"),
    ("Male", "1"), ("FEMALE", "2"), ("0", "0"), (1, "1"), ("2", "2"), ("9", "9"), ("男性", "1"),
    ("ｍａｌｅ", "1"), ("女 ", "2"),
])
def test_gender(spelling: object, code: str) -> None:
    assert GENDER.lookup(spelling) == code


@pytest.mark.parametrize(("spelling", "code"), [
    ("研究生", "10"), ("博士", "11"), ("博士研究生", "11"), ("硕士", "14"), ("硕士研究生", "14"),
    ("本科", "20"), ("大学本科", "20"), ("大学", "20"), ("大专", "30"), ("专科", "30"),
    ("大学专科", "30"), ("中专", "40"), ("中等专科", "40"), ("中职", "40"), ("技校", "40"),
    ("职高", "40"), ("高中", "60"), ("普通高中", "60"), ("初中", "70"), ("小学", "80"),
    ("其他", "90"), ("20", "20"), (20, "20"), ("21", "21"), ("大学本科毕业", "21"),
])
def test_education(spelling: object, code: str) -> None:
    assert EDUCATION.lookup(spelling) == code


@pytest.mark.parametrize(("table", "spelling", "value"), [
    (EMPLOYMENT_STATUS, "在职", "active"), (EMPLOYMENT_STATUS, "正式", "active"),
    (EMPLOYMENT_STATUS, "在岗", "active"), (EMPLOYMENT_STATUS, "试用期", "probation"),
    (EMPLOYMENT_STATUS, "试用延期", "probation"), (EMPLOYMENT_STATUS, "劳务", "temporary"),
    (EMPLOYMENT_STATUS, "实习", "temporary"), (EMPLOYMENT_STATUS, "辞退", "dismissed"),
    (EMPLOYMENT_STATUS, "辞职", "left"), (EMPLOYMENT_STATUS, "离休", "retired"),
    (EMPLOYMENT_STATUS, "无效", "invalid"), (EMPLOYMENT_STATUS, "Retired", "retired"),
    (EMPLOYMENT_STATUS, "probation", "probation"),
    (ORG_UNIT_KIND, "分公司", "company"), (ORG_UNIT_KIND, "处室", "department"),
    (ORG_UNIT_KIND, "中心", "department"), (ORG_UNIT_KIND, "班组", "team"),
    (ORG_UNIT_KIND, "科室", "team"), (ORG_UNIT_KIND, "team", "team"),
    (ORG_UNIT_STATUS, "正常", "active"), (ORG_UNIT_STATUS, "启用", "active"),
    (ORG_UNIT_STATUS, "已撤销", "dissolved"), (ORG_UNIT_STATUS, "封存", "dissolved"),
    (PARTY_ORG_KIND, "基层党委", "committee"), (PARTY_ORG_KIND, "党总支", "general_branch"),
    (PARTY_ORG_KIND, "总支部", "general_branch"), (PARTY_ORG_KIND, "联合党支部", "branch"),
    (PARTY_ORG_KIND, "支部", "branch"), (PARTY_ORG_KIND, "党小组", "group"),
    (MEMBER_CATEGORY, "正式党员", "full"), (MEMBER_CATEGORY, "预备党员", "probationary"),
    (MEMBER_STATUS, "正常", "active"), (MEMBER_STATUS, "已转出", "transferred_out"),
    (MEMBER_STATUS, "已故", "deceased"), (MEMBER_STATUS, "开除党籍", "removed"),
    (MEMBER_STATUS, "退党", "removed"),
    (PERFORMANCE_GRADE, "优秀", "优秀"), (PERFORMANCE_GRADE, "A", "优秀"),
    (PERFORMANCE_GRADE, "b", "良好"), (PERFORMANCE_GRADE, "Ｃ", "合格"),
    (PERFORMANCE_GRADE, "基本合格", "基本合格"), (PERFORMANCE_GRADE, "D", "不合格"),
    (PERFORMANCE_GRADE, "称职", "合格"),
    (BOOLEAN, "是", True), (BOOLEAN, "否", False), (BOOLEAN, "TRUE", True), (BOOLEAN, "0", False),
    (BOOLEAN, "Y", True), (BOOLEAN, "n", False), (BOOLEAN, True, True), (BOOLEAN, 0, False),
])
def test_enumerations(table: CodeTable, spelling: object, value: object) -> None:
    assert table.lookup(spelling) == value


@pytest.mark.parametrize(("table", "spelling"), [
    (POLITICAL_STATUS, "党员啊"), (POLITICAL_STATUS, "14"), (POLITICAL_STATUS, "0"),
    (GENDER, "3"), (ETHNICITY, "57"), (ETHNICITY, "火星族"), (EDUCATION, "1"),
    (PERFORMANCE_GRADE, "E"), (BOOLEAN, "maybe"), (BOOLEAN, 2), (GENDER, True),
])
def test_unknown_spelling_is_an_error_naming_the_value(table: CodeTable, spelling: object) -> None:
    with pytest.raises(MappingError, match=f"unknown value '{spelling}'"):
        table.lookup(spelling)


def test_get_returns_default_for_unknown() -> None:
    assert GENDER.get("?", "x") == "x"


def test_lists_are_looked_up_element_wise() -> None:
    assert PARTY_ORG_KIND.lookup(["党委", "党支部"]) == ["committee", "branch"]


def test_fold_normalizes_width_space_and_case() -> None:
    assert fold(" Ａ　b\u3000Ｃ ") == "abc"


def test_conflicting_spellings_are_refused() -> None:
    with pytest.raises(ValueError, match="means both"):
        CodeTable("inline", {"A": "x", "a": "y"})


def test_every_table_is_registered_by_its_name() -> None:
    assert {"political_status", "gender", "ethnicity", "education", "employment_status",
            "org_unit_kind", "org_unit_status", "party_org_kind", "member_category",
            "member_status", "performance_grade", "boolean"} <= set(TABLES)
