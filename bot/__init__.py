"""The Slack app: every channel its own agent, @mentions to chat, /tool to tools."""
