"""Console texts: Chinese first (zh-CN), English available."""
from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "app_name": {"zh": "双线管理 · 党建数据对齐", "en": "dualline · dual-line alignment"},
    "login": {"zh": "登录", "en": "Log in"},
    "logout": {"zh": "退出", "en": "Log out"},
    "username": {"zh": "用户名", "en": "Username"},
    "password": {"zh": "密码", "en": "Password"},
    "login_failed": {"zh": "用户名或密码错误", "en": "Wrong username or password"},
    "mismatches": {"zh": "待处理差异", "en": "Mismatches"},
    "rule": {"zh": "类型", "en": "Rule"},
    "state": {"zh": "状态", "en": "State"},
    "subject": {"zh": "对象", "en": "Subject"},
    "registered": {"zh": "现所在组织", "en": "Registered"},
    "expected": {"zh": "应在组织", "en": "Expected"},
    "all": {"zh": "全部", "en": "All"},
    "filter": {"zh": "筛选", "en": "Filter"},
    "total": {"zh": "共", "en": "Total"},
    "none": {"zh": "没有符合条件的差异", "en": "No mismatches match"},
    "prev": {"zh": "上一页", "en": "Previous"},
    "next": {"zh": "下一页", "en": "Next"},
    "language": {"zh": "English", "en": "中文"},
}
RULE_LABELS: dict[str, dict[str, str]] = {
    "branch_mismatch": {"zh": "所在支部与业务部门不一致", "en": "Branch ≠ department's branch"},
    "missing_membership": {"zh": "人事为党员但无党籍记录", "en": "HR says member, no party record"},
    "orphan_membership": {"zh": "党籍挂靠但已不在岗", "en": "Party record, not in service"},
    "status_conflict": {"zh": "政治面貌与党员类别不符", "en": "Political status ≠ category"},
    "join_date_conflict": {"zh": "入党日期不一致", "en": "Join dates differ"},
    "uncovered_unit": {"zh": "部门未建支部覆盖", "en": "Unit covered by no branch"},
    "ambiguous_match": {"zh": "人员无法唯一匹配", "en": "Ambiguous person match"},
    "branch_too_small": {"zh": "支部正式党员不足3人", "en": "Branch below 3 full members"},
    "branch_too_large": {"zh": "支部党员超过50人", "en": "Branch above 50 members"},
    "committee_required": {"zh": "应设支部委员会", "en": "Branch committee required"},
    "org_kind_mismatch": {"zh": "组织形式与党员人数不符", "en": "Org kind vs size"},
    "term_expired": {"zh": "届期已满或将满", "en": "Term expired or expiring"},
    "secretary_tenure": {"zh": "书记党龄不足", "en": "Secretary's tenure too short"},
    "probation_overdue": {"zh": "预备期已满未转正", "en": "Probation overdue"},
}
STATE_LABELS: dict[str, dict[str, str]] = {
    "open": {"zh": "待处理", "en": "Open"},
    "resolved": {"zh": "已处理", "en": "Resolved"},
    "ignored": {"zh": "已忽略", "en": "Ignored"},
    "closed": {"zh": "已消除", "en": "Closed"},
}


def translate(key: str, lang: str) -> str:
    return TEXTS.get(key, {}).get(lang, key)
