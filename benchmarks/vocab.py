"""Vocabulary of the synthetic enterprise: names, places, units, positions and code names.

Kept apart from the generator so that the generator reads as logic. Code → name tables give the
spelling the demo sources use for each national code (reference/standards.md); the OA export and
the national roster spell some values differently, as real systems do.
"""
from __future__ import annotations

# Surnames roughly in frequency order (the first ten cover ~40% of people in China); the
# generator weights them Zipf-like so that 王/李/张 dominate and full-name collisions happen.
SURNAMES = (
    "王 李 张 刘 陈 杨 黄 赵 吴 周 徐 孙 马 朱 胡 郭 何 高 林 罗 郑 梁 谢 宋 唐 许 韩 冯 邓 曹 "
    "彭 曾 肖 田 董 袁 潘 于 蒋 蔡 余 杜 叶 程 苏 魏 吕 丁 任 沈 姚 卢 姜 崔 钟 谭 陆 汪 范 金 "
    "石 廖 贾 夏 韦 付 方 白 邹 孟 熊 秦 邱 江 尹 薛 闫 段 雷 侯 龙 史 陶 黎 贺 顾 毛 郝 龚 邵 "
    "万 钱 严 覃 武 戴 莫 孔 向 汤 常 温 康 施 文 牛 樊 葛 邢 安 齐 易 乔 伍 庞 颜 倪 庄 聂 章 "
    "鲁 岳 翟 殷 詹 申 欧阳 耿 关 兰 焦 俞 左 柳 甘 祝 包 宁 尚 符 舒 阮 柯 纪 梅 童 凌 毕 单 "
    "季 裴 霍 涂 成 苗 谷 盛 曲 翁 冉 骆 蓝 路 游 辛 靳 管 柴 蒙 鲍 华 喻 祁 蒲 房 滕 屈 饶 "
    "解 牟 艾 尤 阳 时 穆 农 司 卓 古 吉 缪 简 车 项 连 芦 麦 褚 娄 窦 戚 岑 景 党 宫 费 卜 "
    "冷 晏 席 卫 米 柏 宗 瞿 桂 全 佟 应 臧 闵 苟 邬 边 卞 姬 师 和 仇 栾 隋 商 刁 沙 荣 巫 寇 "
    "桑 郎 甄 丛 仲 虞 敖 巩 明 佘 池 查 麻 苑 迟 邝 司马 上官 诸葛"
).split()

# Given-name characters leaning male / female / neutral. One-character given names are common
# among staff born before 1990 and produce the classic collisions (王伟, 张静, 李娜).
GIVEN_MALE = "伟 强 磊 军 勇 杰 涛 斌 超 明 刚 平 辉 鹏 华 飞 鑫 波 宁 健 建 国 峰 亮 林 海 东 志 俊 宇 浩 凯 振 龙 晨 阳 永 成 庆 兵 彬 博 毅 锋 旭 江 山 栋 森".split()
GIVEN_FEMALE = "芳 娜 敏 静 丽 艳 娟 霞 燕 玲 婷 雪 慧 红 梅 琳 颖 洁 倩 丹 萍 璐 佳 欣 悦 雅 琪 月 兰 凤 秀 英 晶 蕾 莉 薇 琴 云 岚 瑶".split()
GIVEN_NEUTRAL = "文 晓 小 春 秋 立 新 金 玉 子 思 天 一 嘉 家 德 明 安 泽 若 清 卫 红 世 长".split()

# Real county-level area codes (some pre-merger codes, as older ID numbers still carry them),
# weighted toward the coal and power provinces where an energy group recruits.
AREA_CODES = (
    ("140105", 5), ("140106", 4), ("140202", 4), ("140402", 3), ("140602", 6), ("140702", 3),
    ("141002", 3), ("142701", 2), ("140121", 2), ("140624", 3), ("150102", 2), ("150202", 3),
    ("150602", 5), ("152701", 2), ("610113", 3), ("610802", 5), ("610602", 2), ("130102", 2),
    ("130602", 1), ("110101", 1), ("110105", 1), ("120101", 1), ("210102", 1), ("220102", 1),
    ("230102", 1), ("320102", 1), ("330106", 1), ("340104", 1), ("370102", 2), ("370202", 1),
    ("410105", 2), ("410302", 1), ("420106", 1), ("430104", 1), ("500103", 1), ("510104", 1),
    ("620102", 1), ("630102", 1), ("640104", 1), ("650102", 1),
)

MOBILE_PREFIXES = (
    "130 131 132 133 134 135 136 137 138 139 150 151 152 153 155 156 157 158 159 166 "
    "173 176 177 178 180 181 182 183 184 185 186 187 188 189 198 199"
).split()

GROUP_NAME = "北辰能源集团有限公司"
GROUP_SHORT = "集团"
PARTY_SHORT = "北辰"
# (place, industry) of subsidiaries: "北辰朔州能源有限公司", short name "朔州能源".
SUBSIDIARIES = (
    ("朔州", "能源"), ("榆林", "煤化工"), ("鄂尔多斯", "新能源"), ("大同", "热电"), ("长治", "煤业"),
    ("晋中", "电力"), ("包头", "能源"), ("临汾", "矿业"), ("吕梁", "能源"), ("忻州", "新能源"),
)

# Functional departments (机关部门), in the order an OA tree lists them; the first holds the
# company's leadership, as OA systems model 公司领导 as a department.
FUNCTIONAL_DEPARTMENTS = (
    "公司领导", "办公室", "党群工作部", "人力资源部", "财务部", "生产技术部", "安全环保部",
    "计划经营部", "物资供应部", "纪检监察部", "审计部", "法律事务部", "信息中心", "设备管理部",
    "质量管理部", "市场营销部", "工会办公室", "科技研发中心", "综合服务中心", "规划发展部",
)
# Operating units (生产单位); numbered workshops first, then named plants and sites.
OPERATING_UNITS = (
    "运行部", "检修部", "燃料部", "化学车间", "热工车间", "电气车间", "锅炉车间", "汽机车间",
    "输煤车间", "储运中心", "调度中心", "检测中心", "物流中心",
)
SITE_PLACES = (
    "东山", "西沟", "南坪", "北岭", "大峪", "石门", "红崖", "白家庄", "柳林", "杨湾", "马家塔",
    "黄土坡", "青龙", "金鸡岭", "河曲", "平鲁", "神池", "五寨", "偏关", "保德", "府谷", "神木",
    "横山", "靖边", "准格尔", "伊金霍洛", "达拉特", "乌审", "杭锦", "东胜", "塔山", "同煤",
)
SITE_SUFFIXES = ("项目部", "工区", "选煤厂", "矿井", "风电场", "光伏电站", "变电站", "运维站", "分厂")
TEAM_NAMES = ("运行一班", "运行二班", "运行三班", "检修班", "运维班", "化验班", "巡检班", "综合班", "安全监督班")
# Names of departments planted as new and not yet covered by any branch (recent reorganizations).
NEW_UNIT_NAMES = (
    "新能源项目筹备组", "数字化转型办公室", "应急救援中心", "碳资产管理中心", "储能项目部",
    "氢能研究所", "智慧矿山建设办公室", "综合能源服务中心",
)
DISSOLVED_NAMES = ("多种经营部", "三产办公室", "基建办公室", "改制办公室")

LEADER_POSITIONS = ("董事长", "总经理", "党委书记", "副总经理", "副总经理", "总会计师", "总工程师", "纪委书记", "工会主席")
OFFICE_POSITIONS = ("副部长", "主管", "专责", "专责", "科员", "科员", "工程师", "助理工程师")
FINANCE_POSITIONS = ("副部长", "主管会计", "会计", "会计", "出纳", "审核员")
OPERATING_POSITIONS = (
    "副主任", "技术员", "工程师", "值长", "运行值班员", "运行值班员", "检修工", "检修工",
    "操作工", "电工", "焊工", "安全员", "巡检员",
)
TEAM_POSITIONS = ("副班长", "运行值班员", "检修工", "巡检员", "操作工", "化验员", "电工")

# 民族: code, weight. ~92% Han as in the national census; the rest mostly northern minorities.
ETHNICITIES = (
    ("01", 920), ("03", 25), ("02", 18), ("11", 12), ("08", 4), ("06", 3), ("15", 3),
    ("10", 3), ("05", 2), ("04", 2), ("07", 2), ("09", 1), ("12", 1), ("14", 1),
)
ETHNIC_NAMES = {
    "01": "汉族", "02": "蒙古族", "03": "回族", "04": "藏族", "05": "维吾尔族", "06": "苗族",
    "07": "彝族", "08": "壮族", "09": "布依族", "10": "朝鲜族", "11": "满族", "12": "侗族",
    "14": "白族", "15": "土家族",
}
# 学历: code, weight among in-service staff.
EDUCATIONS = (("11", 1), ("14", 10), ("20", 45), ("30", 30), ("40", 10), ("60", 4))
EDUCATION_NAMES_OA = {"11": "博士研究生", "14": "硕士研究生", "20": "本科", "30": "大专", "40": "中专", "60": "高中"}
EDUCATION_NAMES_ROSTER = {"11": "博士研究生", "14": "硕士研究生", "20": "大学本科", "30": "大学专科", "40": "中专", "60": "高中"}

POLITICAL_NAMES = {
    "01": "中共党员", "02": "中共预备党员", "03": "共青团员", "05": "民盟盟员", "06": "民建会员",
    "07": "民进会员", "10": "九三学社社员", "12": "无党派人士", "13": "群众",
}
DEMOCRATIC_PARTIES = ("05", "06", "07", "10", "12")
GENDER_NAMES = {"1": "男", "2": "女"}
EMPLOYMENT_NAMES = {
    "active": "在职", "probation": "试用", "temporary": "临时", "dismissed": "解聘",
    "left": "离职", "retired": "退休", "invalid": "无效",
}
UNIT_KIND_NAMES = {"company": "公司", "department": "部门", "team": "班组"}
UNIT_STATUS_NAMES = {"active": "正常", "dissolved": "撤销"}
MEMBER_CATEGORY_NAMES = {"full": "正式党员", "probationary": "预备党员"}
MEMBER_STATUS_NAMES = {"active": "正常", "transferred_out": "已转出", "deceased": "已故", "removed": "出党"}

# The unknown 政治面貌 spelling planted as noise: a placeholder some HR clerks type.
UNKNOWN_POLITICAL_SPELLING = "党员（待定）"

GRADES = (("优秀", 15, 90, 100), ("良好", 35, 80, 89), ("合格", 44, 65, 79), ("基本合格", 5, 60, 64), ("不合格", 1, 40, 59))

_DIGITS = "零一二三四五六七八九"


def chinese_number(n: int) -> str:
    """1 → 一, 12 → 十二, 30 → 三十, 105 → 一百零五, 10 200 → 一万零二百 (1 ≤ n < 10⁸), as unit
    names spell them (the 1 000 000-staff benchmark numbers tens of thousands of work areas)."""
    if not 0 < n < 100_000_000:
        raise ValueError(n)
    if n >= 10000:
        high, low = divmod(n, 10000)
        head = chinese_number(high) + "万"
        if not low:
            return head
        return head + ("零" if low < 1000 else "") + (chinese_number(low) if low >= 20 or low < 10
                                                     else "一" + chinese_number(low))
    if n < 10:
        return _DIGITS[n]
    if n < 20:
        return "十" + (_DIGITS[n % 10] if n % 10 else "")
    parts: list[str] = []
    zero = False
    for value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        digit = n // value % 10
        if digit:
            if zero and parts:
                parts.append("零")
            parts.append(_DIGITS[digit] + unit)
            zero = False
        else:
            zero = True
    return "".join(parts)
