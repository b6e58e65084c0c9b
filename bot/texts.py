"""Every Chinese text an employee sees, in one place so it is easy to change."""

HELP = (
    "微签助手可以帮你：\n"
    "• 待我处理：查看等你审批或签署的任务（也可发送“待办”）\n"
    "• 进入微签：打开微签，免登录\n"
    "• 审批卡片：直接在消息里点“同意”或“拒绝”\n"
    "• 帮助：再看一次这段说明（也可发送“帮助”或“?”）"
)
