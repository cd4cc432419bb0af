"""Reason codes a bank can get back, with the Chinese message it reads in its receipt."""

from __future__ import annotations

# file-level: the whole file is rejected and nothing is loaded
FILE_REASONS: dict[str, str] = {
    "FILE_NAME_INVALID": "文件名不符合规范 <数据集>_<银行代码>_<YYYYMMDD>[_<序号>].<扩展名>",
    "BANK_MISMATCH": "文件名中的银行代码与上传账户不一致",
    "NO_CONTRACT": (
        "该银行尚无数据报送约定（合同配置）：文件已存入原始档案，约定生效后由运维人员重新处理，无需重新报送"
    ),
    "OK_ROWS_MISMATCH": "控制文件(.ok)中的行数与数据文件不一致",
    "OK_SHA256_MISMATCH": "控制文件(.ok)中的 sha256 与数据文件不一致",
    "OK_INVALID": "控制文件(.ok)格式错误",
    "EMPTY_FILE": "文件为空",
    "UNREADABLE": "文件无法读取（编码、压缩或表格格式错误）",
    "FILE_TOO_LARGE": "文件解压后超过大小上限",
    "HEADER_MISSING": "缺少必填表头",
    "HEADER_DUPLICATE": "表头重复",
    "DELIMITER_MISMATCH": "分隔符与约定不符",
    "TOO_MANY_INVALID": "无效行比例超过约定阈值，整个文件被拒收",
    "POISON_FILE": "本文件多次处理失败（我方原因），已暂停处理并通知运维人员；文件已在存档中保留，运维处理后会另行告知，请勿重复发送",
}

# row-level: the row is rejected, the rest of the file can still load
ROW_REASONS: dict[str, str] = {
    "MALFORMED_ROW": "该行列数与表头不一致或引号未闭合",
    "INVALID_CHARACTER": "字段含有不允许的字符（如 NUL 空字符 \\x00）",
    "REQUIRED_MISSING": "必填字段为空",
    "TOO_LONG": "字段超过最大长度",
    "INVALID_ENUM": "取值不在允许范围内",
    "INVALID_DATE": "日期格式错误或日期不存在",
    "DATE_IN_FUTURE": "日期晚于文件业务日期",
    "DATE_TOO_EARLY": "日期早于 2019-01-01",
    "INVALID_NUMBER": "数值格式错误",
    "NEGATIVE_NUMBER": "数值不能为负",
    "INVALID_USCC": "统一社会信用代码格式或校验位错误",
    "INVALID_RESIDENT_ID": "法定代表人身份证号校验位错误",
    "DRAWN_EXCEEDS_CREDIT": "用信金额大于授信金额",
    "LOAN_AMOUNT_MISSING": "一照贷款必须填写授信金额和用信金额",
    "OPENING_HAS_AMOUNT": "一照开户不应填写授信或用信金额",
    "DUPLICATE_KEY": "同一文件内编号重复",
    "UNKNOWN_OUTLET": "办理网点编号不是本行已报送的网点",
    "UNKNOWN_TOWN": "所属镇街不是瓯海区的街道或镇",
    "COORD_MISSING": "政务服务超市和自助终端必须填写经纬度",
    "COORD_OUT_OF_AREA": "经纬度不在瓯海区范围内",
}

# the receipt of an operator's replay says so, beside the earlier outcome it replaces
REPLAY_MESSAGE = "运维人员已按现行约定重新处理该文件，本回执取代此前的回执"
# a dataset the bank's contract does not list yet: the file waits in the archive too
NO_FEED_MESSAGE = "约定中没有 {dataset} 数据集：文件已存入原始档案，约定补充后由运维人员重新处理，无需重新报送"

ALL_REASONS: dict[str, str] = {**FILE_REASONS, **ROW_REASONS}


def message(code: str) -> str:
    return ALL_REASONS.get(code, code)
