"""Every Chinese text an employee sees, in one place so it is easy to change."""

HELP = (
    "微签助手可以帮你：\n"
    "• 待我处理：查看等你审批或签署的任务（也可发送“待办”）\n"
    "• 进入微签：打开微签，免登录\n"
    "• 审批卡片：直接在消息里点“同意”或“拒绝”\n"
    "• 帮助：再看一次这段说明（也可发送“帮助”或“?”）"
)

# -- chat: 待我处理 / 待办 (bot/handlers/chat.py) ---------------------------------------------
PENDING_NONE = "暂无待办，没有等你审批或签署的任务。\n有新任务时我会第一时间通知你。"
PENDING_KIND = {"approve": "待审批", "sign": "待签署"}
PENDING_KIND_OTHER = "待处理"
PENDING_TITLE = "【{kind}】{title}"
PENDING_UNTITLED = "任务 {task_id}"
PENDING_DESC = "{initiator} 发起"
PENDING_DESC_WHEN = "{desc} · {when}"
PENDING_MORE_TITLE = "还有 {n} 项待办，点此查看全部"
PENDING_MORE_DESC = "共 {total} 项待办，在微签中查看全部"

# -- chat: greeting when an employee opens the app (WQBOT_GREET_ON_ENTER) --------------------
GREETING = "你好，欢迎使用微签助手。\n{pending}点“待我处理”查看等你处理的任务，发送“帮助”看看我还能做什么。"
GREETING_PENDING = "你现在有 {n} 项待办。\n"

# -- sign notification cards (bot/notify/, bot/handlers/cards.py) ------------------------------
CARD_SOURCE = "微签"
CARD_INITIATOR = "发起人"
CARD_DEADLINE = "截止时间"
CARD_STATUS = "状态"
CARD_APPROVE = "同意"
CARD_REJECT = "拒绝"
CARD_OPEN = "查看详情"
CARD_SIGN_OPEN = "去签署"
CARD_SIGN_PENDING = "待你签署"
CARD_MENU_DESC = "微签"
CARD_MENU_OPEN = "在微签中打开"
CARD_MENU_OPEN_DESC = "点此打开，免登录"
# what a card shows once its task is over; {name}: who decided in chat
CARD_DECIDED_BY_ME = {"approve": "已同意", "reject": "已拒绝"}
CARD_DECIDED_BY = {"approve": "已由 {name} 同意", "reject": "已由 {name} 拒绝"}
CARD_RESULT = {
    "approved": "已同意",
    "rejected": "已拒绝",
    "signed": "已签署",
    "withdrawn": "已撤销",
    "expired": "已过期",
}
CARD_ALREADY_DONE = "已处理"
CARD_NOT_RECIPIENT = "这张卡片不是发给你的，你不能处理这项任务。"
CARD_UNKNOWN = "这张卡片已失效，请在微签中查看这项任务。"

# -- follow-up: deadline reminders, the morning digest, the 工作台 tile ---------------------------
REMIND_TITLE = "待办即将截止"
REMIND_TEXT = "《{title}》将于 {when} 截止，请尽快处理"
REMIND_BUTTON = "去处理"
DIGEST_TITLE = "早上好，你有 {n} 项待处理"
DIGEST_ITEM_DESC = {"approve": "待审批", "sign": "待签署"}
DIGEST_DEADLINE = "，{when} 截止"
DIGEST_MORE = "还有 {n} 项，点此查看全部"
TILE_APPROVE = "待审批"
TILE_SIGN = "待签署"

# -- setup mode (WeCom not configured yet: bot/callback/, /api/v1/*) ----------------------------
WECOM_NOT_CONFIGURED = (
    "WeCom is not configured yet (企业微信尚未配置): fill 企业微信参数 on /admin/wecom, or set WECOM_CORP_ID, "
    "WECOM_AGENT_ID, WECOM_APP_SECRET, WECOM_TOKEN and WECOM_AES_KEY"
)
