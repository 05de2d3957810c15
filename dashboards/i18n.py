"""Korean / English labels: one dictionary, one lookup, one switch in the sidebar.

Why a plain dict: the label set is small and fixed, both languages sit side by side so a missing
translation is visible in review, and a test checks every key has both. Unknown keys raise
(a typo must fail the page tests, not print a key to an analyst) unless a ``default`` is given.
"""

from __future__ import annotations

import streamlit as st

LANGUAGES = {"en": "English", "ko": "한국어"}
DEFAULT_LANGUAGE = "en"
KEY = "lang"

TEXT: dict[str, dict[str, str]] = {
    # navigation and shared widgets
    "app.title": {"en": "HEMS analytics", "ko": "HEMS 분석"},
    "app.language": {"en": "Language · 언어", "ko": "언어 · Language"},
    "page.overview": {"en": "Fleet overview", "ko": "전체 현황"},
    "page.household": {"en": "Household drill-down", "ko": "가구 상세"},
    "page.forecasts": {"en": "Forecasts vs actuals", "ko": "예측 대 실제"},
    "page.anomalies": {"en": "Anomalies", "ko": "이상 탐지"},
    "page.rewards": {"en": "Rewards", "ko": "보상"},
    "page.quality": {"en": "Data quality", "ko": "데이터 품질"},
    "page.models": {"en": "Models", "ko": "모델"},
    "filter.title": {"en": "Filters", "ko": "필터"},
    "filter.dates": {"en": "Date range", "ko": "기간"},
    "filter.regions": {"en": "Region", "ko": "지역"},
    "filter.building_types": {"en": "Building type", "ko": "건물 유형"},
    "filter.households": {"en": "Households", "ko": "가구"},
    "filter.household": {"en": "Household", "ko": "가구"},
    "filter.all": {"en": "all", "ko": "전체"},
    "common.download_csv": {"en": "Download CSV", "ko": "CSV 다운로드"},
    "common.no_rows": {
        "en": "Nothing matches these filters: widen the date range or clear a filter.",
        "ko": "필터에 맞는 데이터가 없습니다. 기간을 넓히거나 필터를 해제하세요.",
    },
    # values
    "building.apartment": {"en": "apartment", "ko": "아파트"},
    "building.detached": {"en": "detached house", "ko": "단독주택"},
    "tou.peak_usage_kwh": {"en": "peak", "ko": "최대부하"},
    "tou.mid_usage_kwh": {"en": "mid", "ko": "중간부하"},
    "tou.off_peak_usage_kwh": {"en": "off-peak", "ko": "경부하"},
    "tou.self_consumed_solar_kwh": {"en": "own solar", "ko": "태양광 자가소비"},
    "program.cashback": {"en": "energy cashback", "ko": "에너지캐시백"},
    "program.demand_response": {"en": "demand response", "ko": "수요반응(DR)"},
    "program.generic": {"en": "savings reward", "ko": "절감 보상"},
    "anomalies.source.detector": {"en": "detector", "ko": "탐지 모델"},
    "anomalies.source.forecast_interval": {"en": "outside forecast interval", "ko": "예측 구간 이탈"},
    "feature.total_consumption_kwh": {"en": "total use (kWh)", "ko": "총 사용량 (kWh)"},
    "feature.peak_usage_kwh": {"en": "peak import (kWh)", "ko": "최대부하 수전 (kWh)"},
    "feature.mid_usage_kwh": {"en": "mid import (kWh)", "ko": "중간부하 수전 (kWh)"},
    "feature.off_peak_usage_kwh": {"en": "off-peak import (kWh)", "ko": "경부하 수전 (kWh)"},
    "feature.solar_generation_kwh": {"en": "solar generation (kWh)", "ko": "태양광 발전 (kWh)"},
    "feature.grid_export_kwh": {"en": "grid export (kWh)", "ko": "역송 (kWh)"},
    "feature.gap_intervals": {"en": "reading gaps", "ko": "수집 누락 구간"},
    "feature.repaired_intervals": {"en": "repaired intervals", "ko": "보정 구간"},
    # column and axis labels
    "col.date": {"en": "Date", "ko": "날짜"},
    "col.time": {"en": "Time", "ko": "시각"},
    "col.month": {"en": "Month", "ko": "월"},
    "col.year": {"en": "Year", "ko": "연도"},
    "col.period": {"en": "Period", "ko": "기간"},
    "col.region": {"en": "Region", "ko": "지역"},
    "col.building_type": {"en": "Building type", "ko": "건물 유형"},
    "col.household": {"en": "Household", "ko": "가구"},
    "col.device": {"en": "Device", "ko": "기기"},
    "col.device_type": {"en": "Device type", "ko": "기기 유형"},
    "col.devices": {"en": "Devices", "ko": "기기 수"},
    "col.tou_band": {"en": "TOU band", "ko": "시간대"},
    "col.kwh_per_day": {"en": "kWh per day", "ko": "일평균 kWh"},
    "col.kwh_per_household_day": {"en": "kWh per household-day", "ko": "가구·일당 kWh"},
    "col.kwh_per_resident_day": {"en": "kWh per resident-day", "ko": "1인·일당 kWh"},
    "col.watts": {"en": "Power (W)", "ko": "전력 (W)"},
    "col.carbon_day": {"en": "kgCO₂e per day", "ko": "일별 kgCO₂e"},
    "col.carbon_cumulative": {"en": "cumulative kgCO₂e", "ko": "누적 kgCO₂e"},
    "col.tier": {"en": "Tier", "ko": "누진 단계"},
    "col.temperature": {"en": "Temperature (°C)", "ko": "온도 (°C)"},
    "col.humidity": {"en": "Humidity (%)", "ko": "습도 (%)"},
    "col.co2_level": {"en": "CO₂ (ppm)", "ko": "CO₂ (ppm)"},
    "col.robust_z": {"en": "distance from usual (robust z)", "ko": "평소 대비 편차 (robust z)"},
    "col.program": {"en": "Program", "ko": "프로그램"},
    "col.baseline_kwh": {"en": "Baseline kWh", "ko": "기준 사용량 kWh"},
    "col.actual_kwh": {"en": "Actual kWh", "ko": "실제 사용량 kWh"},
    "col.points": {"en": "Points", "ko": "포인트"},
    "col.saved_ratio": {"en": "Saved vs own baseline", "ko": "자체 기준 대비 절감률"},
    "col.kind": {"en": "Kind", "ko": "종류"},
    "col.nodes": {"en": "Nodes", "ko": "노드 수"},
    "col.status": {"en": "Status", "ko": "상태"},
    "col.messages": {"en": "Messages", "ko": "메시지 수"},
    "col.reason": {"en": "Reason", "ko": "사유"},
    "col.source": {"en": "Source", "ko": "출처"},
    "col.intervals": {"en": "Intervals", "ko": "구간 수"},
    "col.repair_kind": {"en": "Repair", "ko": "보정 종류"},
    "col.completeness": {"en": "Completeness (last 24 h)", "ko": "수집률 (최근 24시간)"},
    "col.model": {"en": "Model", "ko": "모델"},
    # metrics
    "metric.households": {"en": "Households", "ko": "가구 수"},
    "metric.devices_online": {"en": "Devices online", "ko": "온라인 기기"},
    "metric.energy": {"en": "Energy", "ko": "사용 전력량"},
    "metric.cost": {"en": "Cost", "ko": "전기요금"},
    "metric.carbon": {"en": "Carbon", "ko": "탄소 배출"},
    "metric.solar": {"en": "Solar generation", "ko": "태양광 발전량"},
    "metric.day_kwh": {"en": "Day {day}", "ko": "{day} 사용량"},
    "metric.day_cost": {"en": "Day cost", "ko": "당일 요금"},
    "metric.day_carbon": {"en": "Day CO₂", "ko": "당일 탄소"},
    "metric.month_kwh": {"en": "Month {month} to date", "ko": "{month} 누적 사용량"},
    "metric.month_cost": {"en": "Month cost", "ko": "당월 요금"},
    "metric.month_carbon": {"en": "Month CO₂", "ko": "당월 탄소"},
    "metric.points": {"en": "Predictions", "ko": "예측 수"},
    "metric.mae": {"en": "MAE", "ko": "평균절대오차(MAE)"},
    "metric.cv_rmse": {"en": "CV(RMSE)", "ko": "CV(RMSE)"},
    "metric.coverage": {"en": "Actuals inside interval", "ko": "구간 내 실제값 비율"},
    "metric.anomalies": {"en": "Anomalies", "ko": "이상 건수"},
    "metric.households_affected": {"en": "Households affected", "ko": "해당 가구"},
    "metric.from_detector": {"en": "From the detector", "ko": "탐지 모델 판정"},
    "metric.reward_total": {"en": "Rewards", "ko": "보상액"},
    "metric.households_paid": {"en": "Households paid", "ko": "지급 가구"},
    "metric.savings": {"en": "Savings", "ko": "절감량"},
    "metric.not_rewarded": {"en": "Not rewarded (with reason)", "ko": "미지급 (사유 있음)"},
    "metric.points_outstanding": {"en": "Points outstanding", "ko": "잔여 포인트"},
    "metric.tests_passed": {"en": "Tests passed", "ko": "통과한 테스트"},
    "metric.tests_failing": {"en": "Failing or warning", "ko": "실패·경고"},
    "metric.build_time": {"en": "Last build (UTC)", "ko": "최근 빌드 (UTC)"},
    "metric.quarantined": {"en": "Quarantined messages", "ko": "격리된 메시지"},
    "metric.repaired_intervals": {"en": "Repaired intervals", "ko": "보정 구간"},
    "metric.gap_intervals": {"en": "Gap intervals", "ko": "누락 구간"},
    "metric.intervals": {"en": "Meter intervals", "ko": "계량 구간"},
    # pages
    "overview.title": {"en": "Fleet overview", "ko": "전체 현황"},
    "overview.caption": {
        "en": "Energy is what homes used (grid import + own solar); the TOU split is grid import.",
        "ko": "사용 전력량 = 수전량 + 태양광 자가소비, 시간대 구분은 수전량 기준입니다.",
    },
    "overview.empty": {
        "en": "No daily usage yet. Run `hems demo --no-serve` (or the `energy_marts` job in Dagster).",
        "ko": "일별 사용량이 아직 없습니다. "
        "`hems demo --no-serve`(또는 Dagster의 `energy_marts` 작업)를 실행하세요.",
    },
    "overview.tou_daily": {"en": "Daily grid import by TOU band", "ko": "시간대별 일일 수전량"},
    "overview.tou_share": {"en": "TOU split", "ko": "시간대 비중"},
    "overview.distribution": {
        "en": "Mean daily kWh per household, by region and building type",
        "ko": "지역·건물 유형별 가구 일평균 사용량",
    },
    "overview.vs_last_year": {
        "en": "kWh per household-day by month: this year vs last year",
        "ko": "월별 가구·일당 사용량: 올해 대 작년",
    },
    "overview.no_last_year": {
        "en": "No data for {year} yet, so there is no last-year line to compare with.",
        "ko": "{year}년 데이터가 없어 작년 비교선이 없습니다.",
    },
    "household.title": {"en": "Household drill-down", "ko": "가구 상세"},
    "household.caption": {
        "en": "{household} · {region} · {building} · {residents} residents · {area} m² · PV {pv} kWp",
        "ko": "{household} · {region} · {building} · 거주자 {residents}명 · {area} m² · 태양광 {pv} kWp",
    },
    "household.load_curve": {
        "en": "Load curve ({every} means; drag to zoom)",
        "ko": "부하 곡선 ({every} 평균, 드래그로 확대)",
    },
    "household.daily": {"en": "Daily use", "ko": "일별 사용량"},
    "household.carbon": {"en": "Carbon", "ko": "탄소 배출"},
    "household.bill": {
        "en": "Monthly KEPCO bill: kWh with tier limits (dashed), bill on the bars",
        "ko": "월별 한전 요금: 사용량과 누진 구간 경계(점선), 막대 위 청구액",
    },
    "household.devices": {"en": "Devices and their status", "ko": "기기 및 상태"},
    "household.indoor": {"en": "Indoor environment", "ko": "실내 환경"},
    "household.no_readings": {
        "en": "No raw readings for this household in this range.",
        "ko": "이 기간에 이 가구의 원시 측정값이 없습니다.",
    },
    "household.no_bills": {
        "en": "No bill for these months yet.",
        "ko": "이 기간의 요금 내역이 아직 없습니다.",
    },
    "household.no_indoor": {
        "en": "No environment-sensor readings for this household in this range.",
        "ko": "이 기간에 이 가구의 환경 센서 측정값이 없습니다.",
    },
    "forecasts.title": {"en": "Forecasts vs actuals", "ko": "예측 대 실제"},
    "forecasts.caption": {
        "en": "Predictions from the ai_predictions store with their intervals, against what was metered.",
        "ko": "ai_predictions 저장소의 예측값과 예측 구간을 실제 계량값과 비교합니다.",
    },
    "forecasts.empty": {
        "en": "No forecasts yet — run the ML assets (train → promote → predict) in Dagster.",
        "ko": "예측값이 아직 없습니다. Dagster에서 ML 자산(학습 → 승격 → 예측)을 실행하세요.",
    },
    "forecasts.type": {"en": "Prediction type", "ko": "예측 종류"},
    "forecasts.version": {"en": "Model version", "ko": "모델 버전"},
    "forecasts.interval": {"en": "interval", "ko": "예측 구간"},
    "forecasts.predicted": {"en": "predicted", "ko": "예측"},
    "forecasts.actual": {"en": "actual", "ko": "실제"},
    "forecasts.aggregate": {"en": "All chosen households", "ko": "선택한 전체 가구"},
    "forecasts.aggregate_note": {
        "en": "The aggregate band adds the households' bounds, so it is wider than a joint interval.",
        "ko": "합계 구간은 가구별 구간을 더한 것이라 실제 결합 구간보다 넓습니다.",
    },
    "forecasts.household": {"en": "Household {household}", "ko": "가구 {household}"},
    "anomalies.title": {"en": "Anomalies", "ko": "이상 탐지"},
    "anomalies.caption": {
        "en": "Detector flags and actuals outside the forecast interval, why the day was unusual, "
        "and the raw readings around each.",
        "ko": "탐지 모델 판정과 예측 구간을 벗어난 실제값, 그날이 평소와 다른 이유, "
        "전후 원시 측정값을 보여줍니다.",
    },
    "anomalies.empty": {
        "en": "No anomalies yet — run the ML assets (anomaly detector, predictions) in Dagster.",
        "ko": "이상 탐지 결과가 아직 없습니다. Dagster에서 ML 자산(이상 탐지, 예측)을 실행하세요.",
    },
    "anomalies.per_day": {"en": "Anomalies per day", "ko": "일별 이상 건수"},
    "anomalies.pick": {"en": "Anomaly to inspect", "ko": "살펴볼 이상"},
    "anomalies.features": {
        "en": "How {day} differed from the household's usual days",
        "ko": "{day}이(가) 평소와 다른 점",
    },
    "anomalies.readings": {
        "en": "Raw readings ±6 h (1-minute means)",
        "ko": "전후 6시간 원시 측정값 (1분 평균)",
    },
    "anomalies.no_features": {
        "en": "No daily features for this day yet (the marts have not reached it).",
        "ko": "이 날의 일별 특성이 아직 없습니다.",
    },
    "rewards.title": {"en": "Rewards", "ko": "보상"},
    "rewards.caption": {
        "en": "Baselines, savings, energy-cashback and DR rewards, points, settlements "
        "and the community leaderboard.",
        "ko": "기준 사용량, 절감량, 에너지캐시백·DR 보상, 포인트, 정산, 커뮤니티 순위입니다.",
    },
    "rewards.results": {"en": "Baselines, savings and rewards", "ko": "기준 사용량·절감량·보상"},
    "rewards.empty": {
        "en": "No rewards computed yet — run the incentive assets in Dagster.",
        "ko": "계산된 보상이 아직 없습니다. Dagster에서 인센티브 자산을 실행하세요.",
    },
    "rewards.empty_points": {
        "en": "No points in the ledger yet — run the incentive assets.",
        "ko": "포인트 원장이 비어 있습니다. 인센티브 자산을 실행하세요.",
    },
    "rewards.empty_settlements": {
        "en": "No settlements yet — they follow the monthly reward runs.",
        "ko": "정산 내역이 아직 없습니다. 월별 보상 실행 후 생성됩니다.",
    },
    "rewards.empty_leaderboard": {
        "en": "No leaderboard yet — run the pipeline (`hems demo --no-serve`).",
        "ko": "순위표가 아직 없습니다. 파이프라인(`hems demo --no-serve`)을 실행하세요.",
    },
    "rewards.by_period": {"en": "Rewards per period and program", "ko": "기간·프로그램별 보상"},
    "rewards.baseline_vs_actual": {
        "en": "Baseline vs actual (below the diagonal = saved)",
        "ko": "기준 대 실제 (대각선 아래 = 절감)",
    },
    "rewards.points": {"en": "Points", "ko": "포인트"},
    "rewards.balances": {"en": "Points balance per household", "ko": "가구별 포인트 잔액"},
    "rewards.settlements": {"en": "Settlements", "ko": "정산"},
    "rewards.leaderboard": {"en": "Community leaderboard", "ko": "커뮤니티 순위"},
    "rewards.week": {"en": "Week starting", "ko": "주 시작일"},
    "rewards.saved_ratio": {
        "en": "Saved vs own baseline, week of {week}",
        "ko": "{week} 주간 자체 기준 대비 절감률",
    },
    "rewards.per_resident": {
        "en": "kWh per resident-day, week of {week}",
        "ko": "{week} 주간 1인·일당 사용량",
    },
    "rewards.no_baseline_yet": {
        "en": "No household has four earlier weeks yet, so this week ranks by kWh per resident.",
        "ko": "이전 기준 주간이 부족해 이번 주는 1인당 사용량으로 순위를 매깁니다.",
    },
    "quality.title": {"en": "Data quality", "ko": "데이터 품질"},
    "quality.caption": {
        "en": "dbt test results, freshness per source, quarantined messages, meter repairs "
        "and device completeness.",
        "ko": "dbt 테스트 결과, 소스별 최신성, 격리 메시지, 계량 보정, 기기 수집률입니다.",
    },
    "quality.checks": {"en": "Check results (newest dbt build)", "ko": "검사 결과 (최근 dbt 빌드)"},
    "quality.no_checks": {
        "en": "No dbt build results found — run the pipeline (`hems demo --no-serve`).",
        "ko": "dbt 빌드 결과가 없습니다. 파이프라인을 실행하세요.",
    },
    "quality.checks_chart": {"en": "dbt nodes by status", "ko": "상태별 dbt 노드"},
    "quality.freshness": {"en": "Freshness per source", "ko": "소스별 최신성"},
    "quality.marts_newest": {
        "en": "Newest day in the marts (chosen range): {day}",
        "ko": "마트의 최신 일자 (선택 기간): {day}",
    },
    "quality.quarantine": {"en": "Quarantine", "ko": "격리"},
    "quality.no_quarantine": {"en": "No message has been quarantined.", "ko": "격리된 메시지가 없습니다."},
    "quality.quarantine_chart": {"en": "Quarantined messages by reason", "ko": "사유별 격리 메시지"},
    "quality.repairs": {"en": "Meter repairs", "ko": "계량 보정"},
    "quality.no_repairs": {
        "en": "No repaired or gap intervals in this range.",
        "ko": "이 기간에 보정되거나 누락된 구간이 없습니다.",
    },
    "quality.repairs_chart": {"en": "Repaired intervals per day", "ko": "일별 보정 구간"},
    "quality.devices": {"en": "Device completeness", "ko": "기기 수집률"},
    "quality.no_devices": {"en": "No devices known yet.", "ko": "등록된 기기가 없습니다."},
    "quality.status_chart": {"en": "Devices by status", "ko": "상태별 기기"},
    "quality.completeness_chart": {"en": "Completeness over the last 24 h", "ko": "최근 24시간 수집률"},
    "models.title": {"en": "Models", "ko": "모델"},
    "models.caption": {
        "en": "Accuracy over time against the seasonal-naive reference, registry metrics "
        "and champion history.",
        "ko": "계절 단순 예측 대비 시간별 정확도, 레지스트리 지표, 챔피언 이력입니다.",
    },
    "models.accuracy": {
        "en": "Accuracy over time (from stored predictions)",
        "ko": "시간별 정확도 (저장된 예측 기준)",
    },
    "models.no_predictions": {
        "en": "No predictions stored yet — run the ML assets in Dagster.",
        "ko": "저장된 예측이 없습니다. Dagster에서 ML 자산을 실행하세요.",
    },
    "models.no_actuals": {
        "en": "Predictions have no actuals yet (they are filled in once the hours have been metered).",
        "ko": "예측에 대응하는 실제값이 아직 없습니다.",
    },
    "models.cv_rmse_chart": {
        "en": "Daily CV(RMSE): model versions vs seasonal naive (lower is better)",
        "ko": "일별 CV(RMSE): 모델 버전 대 계절 단순 예측 (낮을수록 좋음)",
    },
    "models.registry": {"en": "Registry (MLflow)", "ko": "레지스트리 (MLflow)"},
    "models.no_registry": {
        "en": "No model registry yet — train and register the models (ML assets in Dagster).",
        "ko": "모델 레지스트리가 아직 없습니다. Dagster에서 모델을 학습·등록하세요.",
    },
    "models.metric": {"en": "Metric", "ko": "지표"},
    "models.metric_chart": {"en": "{metric} of each champion's run", "ko": "챔피언 실행별 {metric}"},
    "models.champions": {
        "en": "Current champions (the `champion` alias) and the promotion decision",
        "ko": "현재 챔피언(`champion` 별칭)과 승격 판단",
    },
    "models.champion_history": {"en": "Champion history", "ko": "챔피언 이력"},
}


def language() -> str:
    """The chosen language code (``en`` until the switch is used)."""
    chosen = st.session_state.get(KEY, DEFAULT_LANGUAGE)
    return chosen if chosen in LANGUAGES else DEFAULT_LANGUAGE


def t(key: str, default: str | None = None, **values: object) -> str:
    """The label for ``key`` in the chosen language, with ``{name}`` placeholders filled."""
    entry = TEXT.get(key)
    if entry is None:
        if default is None:
            raise KeyError(f"no label {key!r} in dashboards.i18n.TEXT")
        return default
    text = entry.get(language()) or entry[DEFAULT_LANGUAGE]
    return text.format(**values) if values else text


def col_labels(*same: str, **renamed: str) -> dict[str, str]:
    """Plotly ``labels`` for frame columns from their ``col.*`` labels: ``col_labels("date", ts="time")``
    labels column ``date`` with ``col.date`` and column ``ts`` with ``col.time``."""
    return {column: t(f"col.{column}") for column in same} | {
        column: t(f"col.{key}") for column, key in renamed.items()
    }


def language_switch() -> str:
    """The sidebar switch (a radio keyed ``lang``); returns the chosen code."""
    st.sidebar.radio(
        TEXT["app.language"][DEFAULT_LANGUAGE],
        list(LANGUAGES),
        format_func=LANGUAGES.__getitem__,
        key=KEY,
        horizontal=True,
    )
    return language()
