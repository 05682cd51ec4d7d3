"""The tutorial's usage, unchanged except that the tool UDF lives in a module (`tools`).

Run it twice in a row: the second run re-opens the same agents and their memory.
    OPENAI_API_KEY=... python examples/tutorial.py
"""

import pixeltable as pxt

from agent import Agent
from tools import say_hello

agent = Agent("chatbot", "You're a friendly assistant.")
print(agent.chat("Hi!"))

tool_agent = Agent("tool_agent", "You're a friendly assistant.", tools=pxt.tools(say_hello))
print(tool_agent.tool_call("Say hello to Alice"))
