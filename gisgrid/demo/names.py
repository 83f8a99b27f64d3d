"""Name pools for villages, roads, rivers and people, and the width of numbered ids."""

from __future__ import annotations

_VILLAGE_FIRST = "永新东西南北金三长双红光友建合兴五十四高大安福富龙凤桥园港沙陈张刘严季姜吕石九平"
_VILLAGE_SECOND = "兴桥安丰星明联新和平庄港园沙河湾圩荡甸灶总甲墩店坝华盛强富胜林阳"
_MAIN_ROAD_BASES = (
    "通启", "金沙", "海港", "世纪", "人民", "振兴", "富民", "兴东", "沿江", "跃进", "工农",
    "建设", "朝阳", "长江", "团结", "通海", "江海", "银河",
)
_RIVER_BASES = (
    "东社", "通吕", "九圩", "新江", "团结", "跃进", "红旗", "幸福", "中心", "十字", "南川",
    "北新", "东方", "友谊", "五一", "胜利", "长青", "光明", "青龙", "白龙", "利民", "丰收",
    "姚港", "四甲", "横沙", "竖河", "三余", "二甲", "金余", "汤家", "余东", "正场",
)
_SURNAMES = "陈张顾季陆施曹王李刘朱徐黄周吴杨沈袁姜邱范钱孙丁马冯茅瞿葛严蔡倪秦宋唐郁"
_GIVEN = "建国明华军平红霞芳丽伟强勇杰静敏燕辉峰涛斌林海波宇浩晨洁琴兰英梅春秋雪新文志永德立云翠桂玉金宝荣健俊"
_PHONE_PREFIXES = (
    "130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "155",
    "157", "158", "159", "177", "180", "181", "187", "188", "189", "191", "199",
)
_NUMERALS = "一二三四五六七八九十"


def _ordinal(k: int) -> str:
    """Chinese numeral for 1..10, digits above."""
    return _NUMERALS[k - 1] if 1 <= k <= 10 else str(k)


def _width(n: int, minimum: int) -> int:
    return max(minimum, len(str(n)))
