"""A deterministic, realistic Slack channel history with planted facts and paraphrased questions.

Why synthetic: a real channel export can't be committed (privacy) and its answers aren't labelled. Here
every fact the memory should recall is *planted* once, by a known user, at a known time, inside a
thread, and is buried in ~6 months of everyday engineering chatter (standups, deploys, lunch, bugs,
reviews, CI, on-call) plus *distractors*: messages that share the fact's words but don't answer the
question. Each fact comes with a question worded differently from the fact (a paraphrase), so
word-overlap alone is not enough; some questions name a person (who is often only the *speaker*, not
in the text), some a rare word or a date, some are generic.

Everything is drawn from one seeded `random.Random`, so `generate(seed)` returns the same history on
every machine and Python version (only `random.Random`'s documented-stable methods are used:
`random`, `randint`/`randrange`, `choice`, `choices`, `sample`, `expovariate`).
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

CHANNEL_START = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
"""A Monday; the history covers `CHANNEL_DAYS` days from here."""
CHANNEL_DAYS = 182
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Message:
    """One Slack message as the channel memory would ingest it.

    `key` is the message's Slack `ts` (unique within a channel, what Slack's API uses to address a
    message); `thread_ts` is the thread parent's `ts`, equal to `ts` for a top-level message.
    `at` is the same instant as `ts`, as an aware UTC datetime.
    """

    key: str
    ts: str
    thread_ts: str
    user: str
    user_name: str
    text: str
    at: datetime


@dataclass(frozen=True)
class Probe:
    """A question asked after the history, and the planted message(s) that answer it.

    `kind` is "person" (names a person, often only the fact's speaker), "rare" (names a rare word,
    identifier or date also in the fact) or "generic" (a paraphrase sharing few or no rare words);
    it exists so results can be broken down, and defaults so `Probe(q, asker, keys)` still works.
    """

    question: str
    asker: str
    answer_keys: frozenset[str]
    kind: str = "generic"


@dataclass(frozen=True)
class User:
    """A channel member: Slack ID, display name, and how chatty they are (relative weight)."""

    id: str
    name: str
    weight: int

    @property
    def first(self) -> str:
        return self.name.split()[0]


_NAMES: tuple[tuple[str, int], ...] = (
    ("Priya Raman", 9),
    ("Marcus Webb", 7),
    ("Wei Zhang", 6),
    ("Sofia Alvarez", 8),
    ("Jonas Berg", 5),
    ("Aisha Okafor", 6),
    ("Diego Morales", 7),
    ("Hannah Schmidt", 4),
    ("Kenji Watanabe", 5),
    ("Olu Adeyemi", 3),
    ("Lena Novak", 4),
    ("Sam Carter", 6),
)


@dataclass(frozen=True)
class _FactSpec:
    """A fact to plant, as templates. `{p1}`/`{p2}` are two people's first names, `{date}` a day a few
    weeks after the fact is said ("March 14"), `{qdate}` the same day worded differently for the
    question ("the 14th of March"), `{month}` a month a few months later. `speaker_p1` makes `{p1}` the
    speaker (a first-person fact, so a question naming `{p1}` can only be answered from who said it).
    `lead` is an optional thread opener by someone else, which asks about the topic but doesn't answer.
    `extra` is an optional second answer message by the same speaker, right after the fact.
    """

    fact: str
    question: str
    kind: str
    distractors: tuple[str, ...]
    lead: str | None = None
    speaker_p1: bool = False
    extra: str | None = None


_FACTS: tuple[_FactSpec, ...] = (
    _FactSpec(
        "We decided to ship the 4.2 release on {date} after the QA sign-off.",
        "when are we shipping the new version?",
        "generic",
        (
            "QA found two more regressions in the release candidate, sigh",
            "release notes draft is in the doc, please add your bits before standup",
        ),
        lead="did we ever land on a date for 4.2?",
    ),
    _FactSpec(
        "The staging database password rotation is owned by {p1} from now on.",
        "who handles rotating the staging db credentials?",
        "generic",
        (
            "staging database is crawling again, is someone running a backfill?",
            "reminder from IT: rotate your laptop password before Friday",
        ),
    ),
    _FactSpec(
        "Heads up: the vendor contract with Acme renews in {month}, we need to decide before then if we keep them.",
        "When is the Acme agreement up for renewal?",
        "rare",
        (
            "Acme support finally answered my ticket about the webhook limits",
            "contract tests for the billing client are flaky again",
        ),
    ),
    _FactSpec(
        "Postmortem summary: root cause of last week's outage was an expired TLS cert on the internal load balancer.",
        "what actually took the site down last week?",
        "generic",
        (
            "the load balancer dashboards are finally in Grafana",
            "cert-manager upgrade PR is up, would love a review",
        ),
        lead="is the postmortem written up yet?",
    ),
    _FactSpec(
        "Found the memory leak: the image resizer keeps every decoded frame in an LRU with no size cap.",
        "What did {p1} figure out about the process eating all the RAM?",
        "person",
        (
            "image resizer p99 is fine today, the cache warmup did the trick",
            "LRU cache for the feature flags is now 10 minutes TTL",
        ),
        speaker_p1=True,
    ),
    _FactSpec(
        "The AWS bill jumped 30% last month because the GPU sandbox instances were left running over the holidays.",
        "why did our cloud spending go up so much?",
        "generic",
        (
            "who has access to the AWS billing console? need an invoice for finance",
            "sandbox environment is back, you can run your experiments again",
        ),
    ),
    _FactSpec(
        "New rule approved by {p1}: no production deploys after 3pm on Fridays.",
        "Am I allowed to push to prod late on a Friday afternoon?",
        "generic",
        (
            "production deploy of search went fine, thanks everyone",
            "Friday demo is at 4, bring snacks",
        ),
    ),
    _FactSpec(
        "The on-call rotation now hands over every Tuesday at 10am, not Monday anymore.",
        "what day does the pager handoff happen these days?",
        "generic",
        (
            "on-call was quiet this week, only one false alarm",
            "Monday planning moved to the big room",
        ),
    ),
    _FactSpec(
        "guest wifi on the 4th floor is blue-otter-42 btw",
        "what's the password for the visitor network upstairs?",
        "generic",
        (
            "wifi on the 4th floor keeps dropping during calls",
            "guest badges are at the front desk now",
        ),
    ),
    _FactSpec(
        "The mobile team agreed to drop Android 9 support starting with the {month} release.",
        "When do we stop supporting older phones?",
        "generic",
        (
            "Android build is green again after the Gradle bump",
            "mobile release checklist is in the wiki",
        ),
    ),
    _FactSpec(
        "I moved feature flags off LaunchDarkly onto our own Unleash instance, config lives in infra/flags.",
        "Where are the feature toggles managed now?",
        "generic",
        (
            "can someone flip the flag for the new checkout in staging?",
            "infra repo CI takes 20 minutes now, ugh",
        ),
    ),
    _FactSpec(
        "Offsite is booked: {date} at the Lakeside Lodge, the bus leaves the office at 8.",
        "where and when is the team offsite happening?",
        "rare",
        (
            "anyone have ideas for the offsite agenda? add them to the doc",
            "the lodge near the lake had terrible coffee last year",
        ),
    ),
    _FactSpec(
        "{p1} is taking over the payments integration while {p2} is on parental leave.",
        "who covers payments while {p2} is away?",
        "person",
        (
            "payments integration tests are failing on main, looking",
            "congrats {p2}!! 🎉",
        ),
    ),
    _FactSpec(
        "Postgres 16 upgrade is scheduled for the maintenance window on {date}, "
        "expect about 20 minutes of read-only mode.",
        "when does the database go read-only for the version bump?",
        "generic",
        (
            "Postgres vacuum is running long on the events table",
            "maintenance window for the VPN is tonight, save your work",
        ),
        lead="any news on the pg upgrade?",
    ),
    _FactSpec(
        "Zephyr Logistics asked for SSO via Okta, it's a blocker for their renewal.",
        "What does Zephyr need from us before they renew?",
        "rare",
        (
            "Okta login for the admin panel is broken again, IT is on it",
            "renewal forecast for Q2 is in the sales sheet",
        ),
    ),
    _FactSpec(
        "Design review outcome: the public API stays REST, gRPC only between internal services.",
        "Are we moving the external API over to gRPC?",
        "generic",
        (
            "gRPC health checks are flapping on the ingest service",
            "public API docs have a typo in the pagination section",
        ),
        lead="how did the API design review go?",
    ),
    _FactSpec(
        "test_checkout_timeout is flaky because the mocked clock drifts; {p1} is rewriting it.",
        "why does test_checkout_timeout keep failing randomly?",
        "rare",
        (
            "checkout timeout in prod went up after the last deploy",
            "retried CI three times, finally green",
        ),
    ),
    _FactSpec(
        "Conference travel budget this year is $2,500 per person, {p1} approves the requests.",
        "how much can I spend on going to a tech event?",
        "generic",
        (
            "anyone going to the KubeCon talks? I have a spare pass",
            "travel expenses from the offsite are due by Friday",
        ),
    ),
    _FactSpec(
        "The hotfix for customers getting charged twice went out in v3.8.2.",
        "Which version fixed the double billing bug?",
        "generic",
        (
            "billing dashboard shows twice the usual traffic, is that the crawler?",
            "v3.8.1 is on staging for QA",
        ),
        speaker_p1=True,
    ),
    _FactSpec(
        "We're standardising on Python 3.12 for every service by the end of Q2.",
        "what interpreter version should a new service target?",
        "generic",
        (
            "python dependency upgrades broke the reports service again",
            "end of Q2 planning doc is up",
        ),
    ),
    _FactSpec(
        "The SLA we signed with Globex is 99.95% monthly uptime and a 4-hour response for sev1.",
        "What uptime guarantee did we give Globex?",
        "rare",
        (
            "Globex asked for a copy of the latest pentest report",
            "uptime dashboard shows a blip at 3am, probably the backup job",
        ),
    ),
    _FactSpec(
        "{p1} is out from {date} for two weeks, {p2} is the backup reviewer for the infra repo.",
        "Who reviews infra PRs while {p1} is on vacation?",
        "person",
        (
            "infra repo needs two approvals now, branch protection changed",
            "{p1} can you take a look at #2211 when you have a sec?",
        ),
    ),
    _FactSpec(
        "Logs older than 30 days now go to S3 Glacier, retrieval takes up to 12 hours.",
        "How long does it take to get old logs back?",
        "generic",
        (
            "log volume from the ingest service doubled since Tuesday",
            "S3 bucket for the exports is missing a lifecycle rule",
        ),
    ),
    _FactSpec(
        "Decision: the new dashboard uses Recharts, not D3, since it's easier for the whole team to maintain.",
        "which charting library did we pick for the dashboard?",
        "generic",
        (
            "dashboard is slow to load on Safari",
            "D3 chart on the marketing site is broken on mobile",
        ),
        lead="did we decide on charts for the new dashboard?",
    ),
    _FactSpec(
        "Board demo is on {date}, {p1} is presenting the analytics feature.",
        "when is the board demo and who is presenting?",
        "generic",
        (
            "analytics feature flag is on for internal users",
            "board slides template is in the shared drive",
        ),
    ),
    _FactSpec(
        "Root password for the old Jenkins box is in 1Password under legacy-ci, please don't paste it here.",
        "Where can I find the credentials for the legacy build server?",
        "generic",
        (
            "Jenkins is down again, I'm restarting it",
            "1Password invite for the new hires went out",
        ),
    ),
    _FactSpec(
        "Rate limit for the public API is 600 requests per minute per token, with bursts of 100.",
        "What's the throttling threshold for API clients?",
        "generic",
        (
            "a customer hit a 429 on the export endpoint, checking",
            "token refresh is failing for a few users",
        ),
    ),
    _FactSpec(
        "Figured out the search latency spike: it's Elasticsearch shard rebalancing at midnight.",
        "What did {p1} discover about the slow searches at night?",
        "person",
        (
            "search relevance tweaks are live behind a flag",
            "Elasticsearch cluster upgrade is on the roadmap for Q3",
        ),
        speaker_p1=True,
    ),
    _FactSpec(
        "The summer interns start on {date}; {p1} is organising their onboarding week.",
        "When do the new interns arrive?",
        "generic",
        (
            "onboarding docs are out of date, who owns them?",
            "intern project ideas welcome in the thread",
        ),
    ),
    _FactSpec(
        "We sunset the v1 webhooks on {date}, customers already got the deprecation email.",
        "When do the old webhooks get turned off?",
        "generic",
        (
            "webhook retries are piling up in the queue",
            "deprecation warnings are spamming the logs",
        ),
    ),
    _FactSpec(
        "Standup moves to 9:45 starting next week because of the Berlin folks.",
        "What time is the daily sync now?",
        "generic",
        (
            "skipping standup today, writing my update here",
            "Berlin office has a holiday on Monday",
        ),
    ),
    _FactSpec(
        "JetBrains licenses are renewed through Tristar now, ping {p1} if you need a seat.",
        "How do I get an IDE license?",
        "generic",
        (
            "Tristar invoice is stuck in approval",
            "anyone else's IntelliJ indexing forever after the update?",
        ),
    ),
    _FactSpec(
        "The iPad rendering glitch is a WebKit bug, tracked upstream as 271234, nothing we can fix on our side.",
        "is the tablet display problem our fault?",
        "generic",
        (
            "iPad app review got rejected because of the screenshots",
            "WebKit nightly fixed the scrolling issue on the docs site",
        ),
        lead="any progress on the iPad rendering thing?",
    ),
    _FactSpec(
        "Tokyo region launch is pushed to {month} because the data residency review isn't done.",
        "Why is the Japan launch delayed?",
        "generic",
        (
            "data residency questionnaire from the EU customer is in my inbox",
            "region picker in the signup form has a bug",
        ),
    ),
    _FactSpec(
        "{p1} owns the quarterly access review for production, the next one is due {date}.",
        "who is responsible for auditing prod permissions?",
        "generic",
        (
            "production access requests go through the IT portal",
            "quarterly planning is next Thursday",
        ),
    ),
    _FactSpec(
        "Kafka retention on the events topic is 7 days, anything older you have to pull from the warehouse.",
        "how far back can I replay events from the stream?",
        "generic",
        (
            "Kafka consumer lag alert again on the events topic",
            "the warehouse sync job took 3 hours last night",
        ),
    ),
    _FactSpec(
        "The office is closed on {date} for the electrical work, everyone works from home that day.",
        "Can I come into the office on {qdate}?",
        "rare",
        (
            "office coffee machine is fixed!",
            "working from home today, ping me on slack",
        ),
    ),
    _FactSpec(
        "Marketing wants the pricing page change live by {date}, the copy is final in Figma.",
        "When does the new pricing page need to be up?",
        "generic",
        (
            "Figma is down for everyone or just me?",
            "pricing calculator has a rounding bug for annual plans",
        ),
    ),
    _FactSpec(
        "Our Sentry quota ran out mid-month, {p1} upgraded us to the 500k events plan.",
        "did we raise the error tracking limit?",
        "generic",
        (
            "Sentry is spamming us with the same ResizeObserver error",
            "events plan comparison is in the finance sheet",
        ),
    ),
    _FactSpec(
        "{p1} and {p2} agreed the mobile app reuses the web auth tokens, no separate session service.",
        "what did {p1} and {p2} decide about login on mobile?",
        "person",
        (
            "session service alerts are noisy after the deploy",
            "mobile login screen redesign is in review",
        ),
    ),
    _FactSpec(
        "Q3 roadmap: reducing churn is the top priority, the reporting revamp slips to Q4.",
        "What's the main focus for next quarter?",
        "generic",
        (
            "churn numbers for May are in the dashboard",
            "reporting service is throwing 500s on large exports",
        ),
    ),
    _FactSpec(
        "Backups get verified with a restore drill on the first Monday of every month, run by {p1}.",
        "how often do we test restoring from backup?",
        "generic",
        (
            "backup job failed last night, disk full on the replica",
            "restore of my laptop from Time Machine took all day lol",
        ),
    ),
    _FactSpec(
        "Initech's data export job must finish before 6am their time or their ETL breaks.",
        "what's the deadline for the Initech export?",
        "rare",
        (
            "Initech asked for a new API key",
            "export job for the analytics team is stuck in pending",
        ),
    ),
    _FactSpec(
        "Internal codename for the new onboarding flow is Bluebird.",
        "What are we calling the onboarding redesign internally?",
        "generic",
        (
            "onboarding flow drop-off is at the email verification step",
            "new signup flow mockups are in Figma",
        ),
    ),
    _FactSpec(
        "Payment gateway secrets moved to Vault under kv/payments/prod.",
        "Where do the payment provider keys live now?",
        "generic",
        (
            "Vault token expired again on my machine",
            "payment gateway had a short outage this morning, all good now",
        ),
    ),
    _FactSpec(
        "{p1} is the DRI for the SOC 2 audit, the auditors arrive on {date}.",
        "Who is leading the SOC 2 work?",
        "rare",
        (
            "SOC 2 evidence folder needs screenshots of the MFA settings",
            "auditors asked for the vendor list",
        ),
    ),
    _FactSpec(
        "Customer Northwind gets a 20% discount on the renewal, approved by finance.",
        "What deal did we give Northwind?",
        "rare",
        (
            "Northwind's admin can't reset their password",
            "finance approved the new laptops",
        ),
        extra="Only for the annual plan though, not monthly.",
    ),
    _FactSpec(
        "The 'ENG-4410' crash on Android is fixed by pinning OkHttp to 4.12, PR merged.",
        "is ENG-4410 resolved?",
        "rare",
        (
            "OkHttp upgrade broke the image uploads on older phones",
            "Android crash rate is up a bit after the release",
        ),
    ),
)


# --- Everyday chatter -------------------------------------------------------------------------------

_SLOTS: dict[str, tuple[str, ...]] = {
    "svc": (
        "api-gateway",
        "billing",
        "search",
        "notifications",
        "auth",
        "web",
        "ingest",
        "reports",
        "scheduler",
        "image-resizer",
        "checkout",
        "admin",
    ),
    "env": ("staging", "prod", "canary", "dev", "staging", "prod"),
    "err": (
        "502s",
        "timeouts",
        "a spike in 500s",
        "OOM kills",
        "slow queries",
        "a deadlock",
        "connection resets",
        "TLS handshake errors",
        "duplicate events",
        "high CPU",
        "a memory climb",
        "429s",
    ),
    "task": (
        "the retry logic in {svc}",
        "migrating {svc} to the new queue",
        "cleaning up old feature flags",
        "the onboarding emails",
        "dashboard filters",
        "pagination in the admin UI",
        "rate limiter tests",
        "upgrading dependencies in {svc}",
        "the CSV export",
        "on-call runbook updates",
        "the {svc} metrics",
        "ENG-{ticket}",
        "reviewing PRs",
        "the flaky integration tests",
        "the new settings page",
        "load testing {svc}",
        "docs for the {svc} API",
    ),
    "place": (
        "the taco place",
        "Pho Saigon",
        "the ramen spot",
        "Burrito Bros",
        "the salad bar downstairs",
        "that new Thai place",
        "the food trucks",
        "the Greek place on 5th",
        "the pizza place",
        "the dumpling bar",
    ),
    "meeting": (
        "sprint planning",
        "retro",
        "the architecture sync",
        "the 1:1s",
        "the all-hands",
        "backlog grooming",
        "the product review",
        "the security sync",
    ),
    "time": ("10:00", "10:30", "11:00", "13:30", "14:00", "15:00", "15:30", "16:00"),
    "test": (
        "test_login_redirect",
        "test_invoice_totals",
        "test_search_pagination",
        "test_webhook_retry",
        "test_export_csv",
        "test_profile_update",
        "the e2e suite",
        "the lint job",
    ),
    "cause": (
        "a stale cache",
        "the connection pool size",
        "a missing index",
        "a bad config push",
        "the DNS change",
        "a race in the worker",
        "the new retry policy",
        "an expired token",
        "a noisy neighbour",
    ),
    "tool": ("Cursor", "Zed", "Tailscale", "Bruno", "k9s", "Warp", "Raycast", "uv", "Biome", "Grafana Alloy"),
    "system": ("the prod read replica", "Grafana", "the analytics warehouse", "PagerDuty", "the AWS console", "Figma"),
    "desc": (
        "a small refactor of the {svc} client",
        "the fix for the timezone bug",
        "adding metrics to {svc}",
        "bumping dependencies",
        "the new settings page",
        "removing dead code",
        "the pagination fix",
        "better error messages in {svc}",
        "tests for the retry logic",
    ),
    "weekday": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday"),
    "food": ("tacos", "pho", "ramen", "pizza", "dumplings", "sushi", "burritos"),
    "emoji": ("🙏", "👀", "🚀", "✅", "🎉", "😅", ":+1:", ":tada:", ":eyes:", "🔥"),
}


@dataclass(frozen=True)
class _Category:
    weight: int
    parents: tuple[str, ...]
    replies: tuple[str, ...]
    max_replies: int
    reply_chance: float


_CHATTER: dict[str, _Category] = {
    "standup": _Category(
        16,
        (
            "standup: yesterday {task}, today {task}. no blockers",
            "yesterday: {task}. today: {task}. blocked on review for #{pr}",
            "async standup: finishing {task}, then {task}",
            "today I'm on {task}, out after 4 for a dentist appointment",
            "standup update: {task} is done, starting {task}",
            "morning! continuing {task}, pairing with {name} on {task} after lunch",
        ),
        ("nice", "ping me for the review", "I can help with that", "{emoji}", "same here"),
        2,
        0.2,
    ),
    "deploy": _Category(
        14,
        (
            "deploying {svc} {ver} to {env}",
            "{svc} {ver} is live on {env} {emoji}",
            "rolling back {svc} on {env}, {err} right after the deploy",
            "starting the {env} deploy train, anything else to include?",
            "heads up: deploying {svc} to {env} in 10 minutes",
            "{env} is frozen until the {svc} migration finishes",
        ),
        (
            "{emoji}",
            "looks good from my side",
            "metrics look normal",
            "seeing {err} on {env} after that, checking",
            "false alarm, it was the cache warming up",
            "can you include #{pr}?",
            "done, all green",
            "thanks {name}",
        ),
        4,
        0.55,
    ),
    "bug": _Category(
        12,
        (
            "anyone else seeing {err} from {svc}?",
            "filed ENG-{ticket}: {svc} returns {err} under load",
            "{svc} on {env} has {err} since about {time}",
            "weird one: {svc} logs show {err} but the dashboards are fine",
            "customer report: exports from {svc} are slow, ENG-{ticket}",
        ),
        (
            "yes, since ~{time}",
            "can repro locally",
            "I think it's {cause}",
            "fixed in #{pr}",
            "closing, it was {cause}",
            "looking",
            "<@{uid}> this might be yours?",
            "not seeing it on {env}",
            "added a graph to the ticket",
        ),
        6,
        0.8,
    ),
    "review": _Category(
        12,
        (
            "can someone review #{pr}? it's {desc}",
            "small one: #{pr} ({desc}) {emoji}",
            "#{pr} is ready for another look",
            "PR #{pr} needs a second approval, {desc}",
            "<@{uid}> could you review #{pr} when you have a sec?",
        ),
        ("on it", "left a few comments", "approved ✅", "LGTM with nits", "merged, thanks!", "looking after lunch"),
        3,
        0.7,
    ),
    "lunch": _Category(
        8,
        (
            "lunch at {place}?",
            "{place} at 12:30, who's in?",
            "anyone up for {food} today?",
            "ordering {food} for the team, reply if you want some",
            "going to {place}, back in 45",
        ),
        ("in", "me!", "can't today, meetings", "+1", "save me a seat", "I'll join at 1", "{emoji}"),
        5,
        0.6,
    ),
    "meeting": _Category(
        7,
        (
            "reminder: {meeting} at {time}",
            "moving {meeting} to {time} on {weekday}",
            "notes from {meeting} are in the doc",
            "{meeting} is cancelled this week",
        ),
        ("thanks", "can we record it?", "I'll be 5 min late", "works for me", "{emoji}"),
        3,
        0.4,
    ),
    "ci": _Category(
        8,
        (
            "CI is red on main, {test} failing",
            "the CI runners are slow today",
            "{test} flaked again on #{pr}",
            "main is green again {emoji}",
            "bumped the CI cache key, builds should be faster",
        ),
        ("retrying", "flaky, known issue", "fixed by #{pr}", "I'll quarantine it", "thanks for fixing", "{emoji}"),
        3,
        0.5,
    ),
    "oncall": _Category(
        6,
        (
            "alert: {svc} {err} on {env}",
            "paged for {svc} at 3am, it was {cause}",
            "handing over on-call, quiet week apart from {svc}",
            "{svc} error budget is at 40%, let's be careful with deploys",
        ),
        ("ack", "looking", "resolved", "thanks for handling it {name}", "runbook link?", "post in #incidents pls"),
        4,
        0.6,
    ),
    "question": _Category(
        7,
        (
            "how do I get access to {system}?",
            "where's the doc for the {svc} API?",
            "has anyone tried {tool}?",
            "quick q: what's the process for adding a new env var to {svc}?",
            "who knows how the {svc} retries work?",
        ),
        (
            "ask in #it-help",
            "here: https://wiki.example.com/{svc}",
            "it's in the runbook",
            "{name} knows that best",
            "I use {tool}, it's great",
            "there's a Makefile target for it",
        ),
        3,
        0.8,
    ),
    "social": _Category(
        8,
        (
            "happy friday everyone! {emoji}",
            "anyone have a spare USB-C to HDMI adapter?",
            "the coffee machine on 3 is broken again",
            "who's going to the meetup on {weekday}?",
            "great demo today {name}!",
            "cake in the kitchen {emoji}",
            "it's so hot in the office today",
            "thanks {name} for covering for me yesterday",
        ),
        ("{emoji}", "haha", "me!", "nice", "thank you!", "same", "I have one, come grab it"),
        4,
        0.45,
    ),
}

_ACKS: tuple[str, ...] = (
    "thanks!",
    "noted 👍",
    "good to know",
    "ok, adding it to the wiki",
    "perfect",
    "makes sense",
    ":+1:",
    "thanks for the heads up",
    "got it",
)

_PREFIXES: tuple[str, ...] = ("", "", "", "", "", "hey all, ", "fyi ", "quick one: ", "ok so ")

_SLOT = re.compile(r"\{(\w+)\}")


class _Writer:
    """Fills templates and hands out unique Slack timestamps; holds the one `random.Random`."""

    def __init__(self, rng: random.Random, users: Sequence[User]) -> None:
        self.rng = rng
        self.users = users
        self._used_us: set[int] = set()
        self._weights = [u.weight for u in users]

    def user(self, *, exclude: Sequence[User] = ()) -> User:
        while True:
            (chosen,) = self.rng.choices(self.users, weights=self._weights)
            if chosen not in exclude:
                return chosen

    def fill(self, template: str, fixed: Mapping[str, str] | None = None) -> str:
        def one(match: re.Match[str]) -> str:
            slot = match.group(1)
            if fixed is not None and slot in fixed:
                return fixed[slot]
            return self._slot(slot)

        # Slots can expand to templates with slots of their own ("{task}" -> "load testing {svc}").
        text = template
        for _ in range(3):
            text = _SLOT.sub(one, text)
        return text

    def _slot(self, slot: str) -> str:
        rng = self.rng
        if slot == "pr":
            return str(rng.randint(1200, 3999))
        if slot == "ticket":
            return str(rng.randint(1000, 4999))
        if slot == "ver":
            return f"v{rng.randint(2, 4)}.{rng.randint(0, 14)}.{rng.randint(0, 9)}"
        if slot == "name":
            return self.user().first
        if slot == "uid":
            return self.user().id
        return rng.choice(_SLOTS[slot])

    def stamp(self, at: datetime) -> tuple[str, datetime]:
        """A unique Slack `ts` ("1736155200.004217") at or just after `at`, and the matching datetime."""
        us = round(at.timestamp() * 1_000_000)
        while us in self._used_us:
            us += 1
        self._used_us.add(us)
        return f"{us // 1_000_000}.{us % 1_000_000:06d}", _EPOCH + timedelta(microseconds=us)

    def work_time(self) -> datetime:
        """A random working moment: a weekday (weekends rarely) between about 8:30 and 18:30."""
        rng = self.rng
        while True:
            day = CHANNEL_START.date() + timedelta(days=rng.randrange(CHANNEL_DAYS))
            if day.weekday() < 5 or rng.random() < 0.05:
                break
        minutes = 8 * 60 + 30 + rng.randrange(10 * 60)
        return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
            minutes=minutes, seconds=rng.randrange(60), microseconds=rng.randrange(1_000_000)
        )

    def reply_gap(self) -> timedelta:
        """Mostly minutes between replies, sometimes hours (someone answers after a meeting)."""
        if self.rng.random() < 0.1:
            return timedelta(minutes=60 + self.rng.randrange(300))
        return timedelta(seconds=20 + self.rng.expovariate(1 / 300))


@dataclass
class _Thread:
    start: datetime
    parent: tuple[User, str]
    replies: list[tuple[User, str]] = field(default_factory=list)
    answer_slots: dict[int, int] = field(default_factory=dict)
    """Position in the thread (0 = parent) -> index of the fact it answers."""
    late: list[tuple[User, str]] = field(default_factory=list)
    """Replies inserted later (distractors), timed after the parent but otherwise anywhere."""


def _users(rng: random.Random) -> list[User]:
    alphabet = string.ascii_uppercase + string.digits
    ids: set[str] = set()
    users = []
    for name, weight in _NAMES:
        while True:
            uid = "U0" + "".join(rng.choice(alphabet) for _ in range(7))
            if uid not in ids:
                ids.add(uid)
                break
        users.append(User(uid, name, weight))
    return users


def _ordinal(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _chatter_thread(w: _Writer) -> _Thread:
    names = list(_CHATTER)
    (category,) = w.rng.choices(names, weights=[_CHATTER[n].weight for n in names])
    spec = _CHATTER[category]
    author = w.user()
    text = w.rng.choice(_PREFIXES) + w.fill(w.rng.choice(spec.parents))
    thread = _Thread(w.work_time(), (author, text))
    if w.rng.random() < spec.reply_chance:
        for _ in range(w.rng.randint(1, spec.max_replies)):
            thread.replies.append((w.user(), w.fill(w.rng.choice(spec.replies))))
    return thread


def _fact_thread(w: _Writer, index: int, spec: _FactSpec) -> tuple[_Thread, Probe]:
    """The thread planting fact `index`, and its probe (answer keys are filled in once stamped)."""
    rng = w.rng
    p1 = w.user()
    p2 = w.user(exclude=[p1])
    speaker = p1 if spec.speaker_p1 else w.user(exclude=[p1, p2])
    start = w.work_time()
    when = (start + timedelta(days=rng.randint(6, 40))).date()
    while when.weekday() >= 5:
        when += timedelta(days=1)
    later = start.date().replace(day=1) + timedelta(days=31 * rng.randint(2, 5))
    slots = {
        "p1": p1.first,
        "p2": p2.first,
        "date": f"{when:%B} {when.day}",
        "qdate": f"the {_ordinal(when.day)} of {when:%B}",
        "month": f"{later:%B}",
    }
    asker = w.user(exclude=[speaker, p1])
    fact_text = w.fill(spec.fact, slots)
    if spec.lead is not None:
        lead_author = w.user(exclude=[speaker])
        thread = _Thread(start, (lead_author, w.fill(spec.lead, slots)), [(speaker, fact_text)])
        answer_at = 1
    else:
        thread = _Thread(start, (speaker, fact_text))
        answer_at = 0
    thread.answer_slots[answer_at] = index
    if spec.extra is not None:
        thread.replies.insert(answer_at, (speaker, w.fill(spec.extra, slots)))
        thread.answer_slots[answer_at + 1] = index
    for _ in range(rng.randint(0, 2)):
        thread.replies.append((w.user(exclude=[speaker]), rng.choice(_ACKS)))
    probe = Probe(w.fill(spec.question, slots), asker.id, frozenset(), spec.kind)
    return thread, probe


def _thread_size(thread: _Thread) -> int:
    return 1 + len(thread.replies) + len(thread.late)


def generate(seed: int = 7, messages: int = 3000, facts: int = 40) -> tuple[list[Message], list[Probe]]:
    """`messages` messages (exactly) in time order, and one probe per planted fact (`facts` of them).

    The facts are a seeded sample of the built-in fact list (at most `len(_FACTS)`); each is said once,
    with two distractors each placed elsewhere in the history.
    """
    if not 0 <= facts <= len(_FACTS):
        raise ValueError(f"facts must be between 0 and {len(_FACTS)}")
    rng = random.Random(seed)
    users = _users(rng)
    w = _Writer(rng, users)
    chosen = rng.sample(range(len(_FACTS)), facts)

    fact_threads: list[_Thread] = []
    probes: list[Probe] = []
    for index, spec_index in enumerate(chosen):
        thread, probe = _fact_thread(w, index, _FACTS[spec_index])
        fact_threads.append(thread)
        probes.append(probe)
    distractors = [
        w.fill(text, {"p1": rng.choice(users).first, "p2": rng.choice(users).first})
        for spec_index in chosen
        for text in _FACTS[spec_index].distractors
    ]

    budget = messages - sum(_thread_size(t) for t in fact_threads) - len(distractors)
    if budget < 0:
        raise ValueError(f"{messages} messages are too few for {facts} facts")
    chatter: list[_Thread] = []
    while budget > 0:
        thread = _chatter_thread(w)
        del thread.replies[budget - 1 :]
        chatter.append(thread)
        budget -= _thread_size(thread)

    # Distractors: half as replies in some chatter thread, half as top-level messages of their own.
    standalone: list[_Thread] = []
    for text in distractors:
        author = w.user()
        if chatter and rng.random() < 0.5:
            rng.choice(chatter).late.append((author, text))
        else:
            standalone.append(_Thread(w.work_time(), (author, text)))

    out: list[Message] = []
    answers: dict[int, set[str]] = {i: set() for i in range(len(probes))}
    for thread in [*chatter, *standalone, *fact_threads]:
        parent_user, parent_text = thread.parent
        ts, at = w.stamp(thread.start)
        out.append(Message(ts, ts, ts, parent_user.id, parent_user.name, parent_text, at))
        if 0 in thread.answer_slots:
            answers[thread.answer_slots[0]].add(ts)
        moment = at
        for position, (user, text) in enumerate(thread.replies, start=1):
            moment += w.reply_gap()
            reply_ts, reply_at = w.stamp(moment)
            out.append(Message(reply_ts, reply_ts, ts, user.id, user.name, text, reply_at))
            if position in thread.answer_slots:
                answers[thread.answer_slots[position]].add(reply_ts)
        for user, text in thread.late:
            reply_ts, reply_at = w.stamp(at + timedelta(seconds=30 + rng.randrange(6 * 3600)))
            out.append(Message(reply_ts, reply_ts, ts, user.id, user.name, text, reply_at))
    out.sort(key=lambda m: m.at)
    probes = [Probe(p.question, p.asker, frozenset(answers[i]), p.kind) for i, p in enumerate(probes)]
    return out, probes


def channel_users(messages: Sequence[Message]) -> dict[str, str]:
    """User ID -> display name, as a Slack `users.info` lookup would give (for resolving `<@U…>`)."""
    return {m.user: m.user_name for m in messages}


def describe(messages: Sequence[Message], probes: Sequence[Probe]) -> str:
    """One line about a generated history, for benchmark output."""
    threads = {m.thread_ts for m in messages}
    replies = sum(1 for m in messages if m.thread_ts != m.ts)
    first, last = messages[0].at.date(), messages[-1].at.date()
    kinds: dict[str, int] = {}
    for p in probes:
        kinds[p.kind] = kinds.get(p.kind, 0) + 1
    kind_text = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    return (
        f"{len(messages)} messages ({replies} thread replies, {len(threads)} top-level) by "
        f"{len(channel_users(messages))} users from {first} to {last}; {len(probes)} probes ({kind_text})"
    )
