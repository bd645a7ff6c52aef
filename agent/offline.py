"""The built-in agent, used when no LLM is configured: intents, actions, rules, knowledge.

It keeps what it learned in the conversation's memory (order numbers, the email the shopper
proved, what the store's API said), so nobody asks the shopper twice. Order details are shown
only to a shopper who proved the order (number + matching email); an unproved order reads exactly
like an unknown one, and its lookup only helps the team (tags, marked unverified): agent/trust.py."""

from __future__ import annotations

import re
import time
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

from agent import trust
from agent.actions import ActionResult, ActionRunner
from agent.classifier import (
    IntentClassifier,
    SentenceIntents,
    merge_intents,
    shipped_intents,
    trained,
)
from agent.entities import EMAIL, OrderNumbers, extract_emails
from agent.facts import build_facts, summary_text
from agent.intents import Intents, detect, from_names
from agent.knowledge import KnowledgeBase, Passage
from agent.language import detect_language
from agent.prepare import prepare_actions
from agent.replies import (
    CHECKOUT,
    Verdict,
    at_checkout,
    deny_requests,
    read_reply,
    reply_classifier,
    stage_classifier,
)
from agent.rules import Decision, handoff_expectation
from agent.text import content_words
from domain.ports import ConversationView, Handoff, MessageView, Turn
from domain.storeconfig import StoreConfig
from domain.templating import render
from domain.waiting import render_wait

# Intents that describe this message only; every other intent found stays for the conversation.
TURN_INTENTS = frozenset({"none", "order_status"})


def build_classifier(config: StoreConfig) -> IntentClassifier:
    """The shipped intents plus the store's own (`intents:`), trained once per process."""
    return trained(merge_intents(shipped_intents(), config.intents))


# A sentence that names no order but points at one of several by its place ("cancel the second
# one", "die zweite", "la última"): the shopper's duplicate order is one problem order, not two.
_ARTICLE = r"\b(?:the|that|this|die|der|das|den|dem|el|la|lo|le|de|het|il|o|a|l')\s*"
_FIRST = re.compile(
    _ARTICLE
    + r"(first|1st|erste[nrms]?|primer[oa]?|premi[eè]re?|eerste|primo|primeir[oa]|f[öo]rsta)\b"
)
_LAST = re.compile(
    _ARTICLE + r"(second|2nd|last|latest|newer|newest|duplicate|zweite[nrms]?|letzte[nrms]?|"
    r"neuere[nrms]?|doppelte[nrm]?|segund[oa]|[úu]ltim[oa]|duplicad[oa]|deuxi[èe]me|derni[èe]re?|"
    r"doublon|tweede|laatste|nieuwste|dubbele|secondo|seconda|andra|senaste)\b"
)


def by_position(text: str, orders: list[str]) -> list[str]:
    """The one order a sentence points at by its place among `orders` (in the order the shopper
    named them), else all of them."""
    low = text.lower()
    first, last = bool(_FIRST.search(low)), bool(_LAST.search(low))
    if first == last:
        return orders
    return [orders[0]] if first else [orders[-1]]


@dataclass
class TurnState:
    """Everything known about the current turn, shared by the offline and the LLM agents."""

    conversation: ConversationView
    history: list[MessageView]
    shopper: list[MessageView]
    text: str
    det: Intents
    mem: dict[str, Any]
    facts: dict[str, Any]
    decision: Decision
    actions_run: list[dict[str, Any]]
    new_orders: list[str]
    # The shopper's answer to the person the agent offered in its last reply, if it was one.
    offer_reply: Verdict = None
    # Requests from earlier messages that this one took back ("actually, don't cancel").
    retracted: list[str] = field(default_factory=list)
    # The entities known before this message (to attach intents found later to their orders).
    known_before: dict[str, list[str]] = field(default_factory=dict)


def new_memory() -> dict[str, Any]:
    return {
        "turn": 0,
        "email": None,
        "entities": {},
        "orders": {},
        "customer": None,
        "intents": [],
        "pending_intents": [],
        "last_orders": [],
        "asked": [],
        "misses": 0,
        "offered": False,
        "hints": [],
        "lookup_failed": False,
    }


_PLAIN = (str, int, float, bool, type(None))


def copy_memory(value: Any) -> Any:
    """A deep copy of a conversation's memory: JSON's dicts, lists and scalars (it is stored as
    JSON) copied directly, anything else by `deepcopy`. Several times faster than `deepcopy` on
    the whole tree, which keeps a memo of every object it copies; a turn copies the memory once
    or twice."""
    kind = type(value)
    if kind is dict:
        return {k: copy_memory(v) for k, v in value.items()}
    if kind is list:
        return [copy_memory(v) for v in value]
    if kind in _PLAIN:
        return value
    return deepcopy(value)


class OfflineAgent:
    def __init__(
        self,
        config: StoreConfig,
        knowledge: KnowledgeBase,
        actions: ActionRunner,
        classifier: IntentClassifier | None = None,
    ) -> None:
        self.config = config
        self.kb = knowledge
        self.actions = actions
        self.classifier = classifier or build_classifier(config)
        self.replies = reply_classifier()
        self.stages = stage_classifier()
        # Order numbers as shoppers type them; the store's prefixes are also learned from the
        # order numbers its own help pages show.
        self.readers: dict[str, OrderNumbers] = {}
        for name, entity in config.entities.items():
            if name != "email":
                reader = OrderNumbers(entity)
                if entity.lenient:
                    reader.learn(c.body for c in knowledge.chunks)
                self.readers[name] = reader

    def extract(self, name: str, text: str, mem: dict[str, Any] | None = None) -> list[str]:
        """Values of entity `name` in `text`, read with what this conversation already named."""
        if name == "email":
            return extract_emails(text)
        context = (mem or {}).get("entities", {}).get(name, [])
        return [v for v in self.readers[name].extract(text, context) if "@" not in v]

    # ------------------------------------------------------------ the turn

    async def respond(self, conversation: ConversationView, history: list[MessageView]) -> Turn:
        started = time.monotonic()
        state = await self.prepare(conversation, history)
        turn = self.decide(state)
        if turn is None:
            turn = self.answer(state)
        turn.latency_ms = int((time.monotonic() - started) * 1000)
        return turn

    async def prepare(
        self,
        conversation: ConversationView,
        history: list[MessageView],
        intents: list[str] | None = None,
    ) -> TurnState:
        """Read the latest shopper message, run the actions it triggers, evaluate the rules.
        `intents`: the message's intents as a model classified them (else the classifier's)."""
        for reader in self.readers.values():
            reader.forget()  # a new message: nothing read for an earlier one is reused
        mem = {**new_memory(), **copy_memory(conversation.memory or {})}
        shopper = [m for m in history if m.role == "shopper"]
        text = shopper[-1].text if shopper else ""
        mem["turn"] += 1
        # The language of the service's own wording for this shopper (the wait at a handoff).
        mem["language"] = detect_language(m.text for m in shopper[-3:])
        if intents is None:
            det = detect(text, self.classifier)
        else:
            det = from_names(text, intents, self.classifier.names)
        deny_requests(self.replies, det.sentences)
        det.found = {i for s in det.sentences for i in s.intents}
        if not mem["entities"].get("order_number") and at_checkout(self.stages, det.sentences):
            # A card declined while paying: no order exists, so no number to ask for first.
            det.found.add(CHECKOUT)
        # Right after the agent offered a person, "yes" / "ja" / "oui" asks for one; "actually,
        # don't cancel" takes back a request that is still waiting.
        offer_reply = read_reply(
            self.replies, text, offered=bool(mem.get("offered")), waiting=self._waiting(mem)
        )
        mem["offered"] = False
        if offer_reply == "decline" and "human" in det.found:
            # "Thanks, but I'd rather talk to a person who knows": its first clause reads like a
            # no, the message asks for a person.
            offer_reply = "accept"
        if offer_reply is not None and det.sentences:
            # That sentence was an answer to the agent ("yes please"), not a request of its own.
            det.sentences[0].intents = []
            det.found = {i for s in det.sentences for i in s.intents}
        retracted = self._retract(mem) if offer_reply == "retract" else []
        wanted = det.found - TURN_INTENTS
        if offer_reply == "accept":
            wanted = wanted | {"human"}
        mem["intents"] = sorted(set(mem["intents"]) | wanted)
        actions_run: list[dict[str, Any]] = []
        known_before = dict(mem["entities"])
        new_orders = await self._collect(conversation, mem, text, actions_run)
        self._attach_intents(mem, det, known_before, new_orders)
        facts = build_facts(conversation, mem)
        decision = trust.decide(self.config, facts)
        return TurnState(
            conversation,
            history,
            shopper,
            text,
            det,
            mem,
            facts,
            decision,
            actions_run,
            new_orders,
            offer_reply,
            retracted,
            known_before,
        )

    @staticmethod
    def _waiting(mem: dict[str, Any]) -> bool:
        """An earlier request has not led to a handoff (a rule asked for the order number first,
        or no rule acts on it)."""
        return bool(
            mem["intents"]
            or mem.get("pending_intents")
            or any(o.get("intents") for o in mem["orders"].values())
        )

    @staticmethod
    def _retract(mem: dict[str, Any]) -> list[str]:
        """Drop the requests of earlier messages: none of them has led to a handoff (the agent
        stops answering once one has), so the shopper may still take them back. This message's
        own requests stay, so "don't cancel A, but B's payment failed" still counts B's."""
        dropped = set(mem["intents"]) | set(mem.get("pending_intents") or [])
        mem["intents"] = []
        mem["pending_intents"] = []
        for order in mem["orders"].values():
            dropped |= set(order.get("intents") or [])
            order["intents"] = []
        return sorted(dropped)

    def refresh(self, state: TurnState) -> None:
        """Re-derive facts and the rules' decision after more actions ran (the LLM's tools)."""
        state.facts = build_facts(state.conversation, state.mem)
        state.decision = trust.decide(self.config, state.facts)

    def decide(self, state: TurnState) -> Turn | None:
        """The rules' verdict: a handoff, a question the rules need answered first, or None."""
        turn = Turn(reply=None, actions_run=state.actions_run, memory=state.mem)
        # A failed order lookup leaves the shopper's question open: hand off. A failed tier
        # lookup only costs the routing hint, so the agent carries on.
        failed = [
            a
            for a in state.actions_run
            if a["status"] == "error" and self.config.actions[a["action"]].fact == "orders"
        ]
        if failed:
            state.mem["lookup_failed"] = True
            self._handoff(
                turn,
                state.conversation,
                state.mem,
                state.facts,
                state.decision,
                extra_tags=["lookup-failed"],
                extra_reason=f"The store's API failed: {failed[0]['error']}",
                lead=render(self.config.messages.lookup_failed, **trust.proved_view(state.facts)),
            )
            return turn
        locked = trust.locked_now(state.mem)
        if locked:
            self._handoff(
                turn,
                state.conversation,
                state.mem,
                state.facts,
                state.decision,
                extra_tags=[self.config.limits.identity_tag],
                extra_reason=f"More than {self.config.limits.email_attempts} email addresses "
                f"tried for {', '.join(locked)}: check who the shopper is",
                lead=self.config.messages.identity_check,
            )
            return turn
        if state.decision.escalate:
            if self._defer(state.decision, state.mem, turn):
                # Asking for the order number first: a question the pages answer ("how long do
                # I have to send it back?") is answered in the same reply.
                passage = (
                    self._search(state.text, state.shopper, state.det)
                    if state.det.question
                    else None
                )
                if passage is not None:
                    turn.reply = f"{passage.text}\n(Source: {passage.source})\n\n{turn.reply}"
                    turn.sources = [passage.source]
                return turn
            self._handoff(turn, state.conversation, state.mem, state.facts, state.decision)
            return turn
        return None

    def handoff_turn(
        self, state: TurnState, *, tags: list[str], reason: str, lead: str | None = None
    ) -> Turn:
        """A handoff asked for by someone other than the rules (the LLM, a fallback)."""
        turn = Turn(reply=None, actions_run=state.actions_run, memory=state.mem)
        self._handoff(
            turn,
            state.conversation,
            state.mem,
            state.facts,
            state.decision,
            extra_tags=tags,
            extra_reason=reason,
            lead=lead,
        )
        return turn

    async def run_action(self, state: TurnState, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run a custom action for a tool call. The arguments go through the same entity patterns
        as typed text (so a made-up or malformed value is refused), and what comes back is only
        what this shopper may see: an order they have not proved shows no details."""
        action = self.config.actions.get(name)
        if action is None:
            return {"error": f"unknown action {name}"}
        values = []
        for inp, entity_name in action.inputs.items():
            raw = str(args.get(inp, "")).strip()
            found = self.extract(entity_name, raw, state.mem)
            if not found:
                return {"error": f"{inp} is not a valid {entity_name}: ask the shopper for it"}
            values.append(found[0])
        before = len(state.actions_run)
        new_orders = await self._collect(
            state.conversation, state.mem, " ".join(values), state.actions_run
        )
        state.new_orders.extend(n for n in new_orders if n not in state.new_orders)
        self.refresh(state)
        ran = state.actions_run[before:]
        if any(a["status"] == "error" for a in ran):
            return {"error": "the store's system is not answering"}
        if action.fact == "customer":
            cust = state.facts["customer"]
            return (
                {"customer": {"tier": cust.get("tier"), "name": cust.get("name")}}
                if cust.get("verified")
                else {"customer": "not verified"}
            )
        out = []
        for v in values:
            view = trust.tool_view(state.mem["orders"].get(v))
            view["number"] = view.get("number") or v
            out.append(view)
        return {"orders": out}

    def answer(self, state: TurnState) -> Turn:
        misses = state.mem["misses"]
        hints = self._weak_intents(state)
        earlier = set(state.mem.get("hints") or [])
        before = copy_memory(state.mem) if hints or earlier else None
        turn = Turn(reply=None, actions_run=state.actions_run, memory=state.mem)
        self._answer(
            turn,
            state.conversation,
            state.mem,
            state.det,
            state.text,
            state.shopper,
            state.new_orders,
            state.facts,
            offer_reply=state.offer_reply,
            retracted=state.retracted,
        )
        if state.mem["misses"] <= misses:
            state.mem["hints"] = []
            return turn
        if turn.handoff is not None and before is not None:
            # Handing off because two questions in a row found no answer: if what the messages
            # hinted at makes a rule hand off, the rule's tag explains it, not `unanswered`.
            rescued = self._weak_handoff(state, before, hints, earlier)
            if rescued is not None:
                return rescued
        state.mem["hints"] = sorted(hints)
        return turn

    def _weak_intents(self, state: TurnState) -> set[str]:
        """Requests this message hints at below their bar (over their fallback bar)."""
        if state.offer_reply or state.retracted:
            return set()
        hinted = {i for s in state.det.sentences for i in s.weak if i not in TURN_INTENTS}
        return hinted - set(state.mem["intents"])

    def _weak_handoff(
        self, state: TurnState, mem: dict[str, Any], weak: set[str], earlier: set[str]
    ) -> Turn | None:
        """The requests the unanswered messages hinted at (over their fallback bar, not their
        bar), read into the rules: when a rule then hands off, it does so with its tags (or first
        asks for the order number it needs). None when no rule does. `mem`: memory before this
        turn's answer. Only used when a handoff is happening anyway: a hint alone never hands
        off a question the shopper may simply want answered."""
        det = Intents(
            found=set(weak),
            sentences=[
                SentenceIntents(s.text, s.best, s.probability, list(s.weak))
                for s in state.det.sentences
            ],
        )
        mem["intents"] = sorted(set(mem["intents"]) | weak | earlier)
        # The last message's hints belong to the orders it was about (or wait for one).
        targets = [mem["orders"][n] for n in mem.get("last_orders") or [] if n in mem["orders"]]
        for order in targets:
            order["intents"] = sorted(set(order.get("intents") or []) | earlier)
        if earlier and not targets:
            mem["pending_intents"] = sorted(set(mem.get("pending_intents") or []) | earlier)
        self._attach_intents(mem, det, state.known_before, state.new_orders)
        facts = build_facts(state.conversation, mem)
        decision = trust.decide(self.config, facts)
        if not decision.escalate:
            return None
        state.mem, state.facts, state.decision = mem, facts, decision
        turn = Turn(reply=None, actions_run=state.actions_run, memory=mem)
        if not self._defer(decision, mem, turn):
            self._handoff(turn, state.conversation, mem, facts, decision)
        return turn

    # ------------------------------------------------------- gathering facts

    async def _collect(
        self,
        conversation: ConversationView,
        mem: dict[str, Any],
        text: str,
        actions_run: list[dict[str, Any]],
    ) -> list[str]:
        """Pick out entities, run the actions they trigger (within the conversation's budget of
        calls to the store's API), check the emails given against the orders named, remember it
        all (capped)."""
        limits = self.config.limits
        budget = trust.Budget(mem, limits)
        emails = extract_emails(text)
        seen: dict[str, list[str]] = mem["entities"]
        new_values: dict[str, list[str]] = {}
        for name in self.config.entities:
            values = emails if name == "email" else self.extract(name, text, mem)
            fresh = list(dict.fromkeys(v for v in values if v not in seen.get(name, [])))
            if fresh:
                new_values[name] = fresh

        new_orders: list[str] = []
        looked_up: set[str] = set()
        for aname, action in self.config.actions.items():
            if action.fact != "orders":
                continue
            for entity in action.runs_on:
                for value in new_values.get(entity, []):
                    if not budget.take():
                        # Not looked up, not remembered: named again later, it is looked up then.
                        budget.skip()
                        continue
                    inp = next(k for k, v in action.inputs.items() if v == entity)
                    res = await self.actions.run(aname, {inp: value})
                    actions_run.append(res.as_dict())
                    self._remember_order(
                        mem, value, res, action.verify.captured if action.verify else None
                    )
                    looked_up.add(value)
                    if value not in new_orders:
                        new_orders.append(value)
        order_entities = {
            e for a in self.config.actions.values() if a.fact == "orders" for e in a.runs_on
        }
        for name, fresh in new_values.items():
            keep = [v for v in fresh if name not in order_entities or v in looked_up]
            seen.setdefault(name, []).extend(v for v in keep if v not in seen.get(name, []))
        signed = conversation.customer.email
        trust.check_emails(mem, signed, limits, emails[-1] if emails else None, new_orders)
        if emails:
            mem["email"] = emails[-1]
        await self._lookup_customer(conversation, mem, actions_run, budget)
        trust.bound_memory(mem, limits)
        return new_orders

    def _attach_intents(
        self,
        mem: dict[str, Any],
        det: Intents,
        known_before: dict[str, list[str]],
        new_orders: list[str],
    ) -> None:
        """Each order gets the intents of the sentences about it (`order.intents` in the rules), so
        "cancel A, and B's payment failed" is a cancellation of A and a payment problem on B.
        A sentence naming no order is about the order named before it in the message (or after
        it, for a story that names the order at the end), else the orders the last message named;
        with no order at all yet, its intents wait for the first order the shopper names."""
        if "order_number" not in self.config.entities:
            return
        context = list(known_before.get("order_number", [])) + list(
            mem["entities"].get("order_number", [])
        )
        per_sentence = []
        for s in det.sentences:
            named = self.readers["order_number"].extract(s.text, context)
            per_sentence.append(named)
        first = next((n for n in per_sentence if n), [])
        current: list[str] = []
        attached: dict[str, set[str]] = {}
        pending = set(mem.get("pending_intents") or [])
        for s, named in zip(det.sentences, per_sentence, strict=True):
            wanted = set(s.intents) - TURN_INTENTS
            if named:
                current = named
            target = current or first or list(mem.get("last_orders") or [])
            if not wanted:
                continue
            if len(target) >= 2 and not named:
                target = by_position(s.text, target)
            if target:
                for n in target:
                    attached.setdefault(n, set()).update(wanted)
            else:
                pending |= wanted
        if pending and new_orders:
            for n in new_orders:
                attached.setdefault(n, set()).update(pending)
            pending = set()
        mem["pending_intents"] = sorted(pending)
        named_now = [n for ns in per_sentence for n in ns] or new_orders
        if named_now:
            mem["last_orders"] = list(dict.fromkeys(named_now))
        for number, names in attached.items():
            order = mem["orders"].get(number)
            if order is not None:
                order["intents"] = sorted(set(order.get("intents") or []) | names)

    def _remember_order(
        self, mem: dict[str, Any], number: str, res: ActionResult, owner_field: str | None
    ) -> None:
        entry: dict[str, Any] = {"number": number, "lookup": res.status}
        if res.status == "ok":
            entry.update({k: v for k, v in res.captured.items() if v is not None})
            entry["number"] = res.captured.get("number") or number
            entry["owner"] = res.captured.get(owner_field) if owner_field else None
        previous = mem["orders"].pop(number, None) or {}
        # What the shopper already tried or proved for this number stands after a new lookup.
        for key in ("tried", "verified", "locked", "intents"):
            if key in previous:
                entry[key] = previous[key]
        mem["orders"][number] = entry

    async def _lookup_customer(
        self,
        conversation: ConversationView,
        mem: dict[str, Any],
        actions_run: list[dict[str, Any]],
        budget: trust.Budget,
    ) -> None:
        """The customer record behind a proved identity (tier, history: the rules' priority and
        SLA); failing that, the owner of an order named but not proved, which only helps tag
        the handoff and is shown to staff as "order owner (not verified)"."""
        action_name = next(
            (n for n, a in self.config.actions.items() if a.fact == "customer"), None
        )
        if action_name is None:
            return
        action = self.config.actions[action_name]
        inp = next(iter(action.inputs), "email")
        current = mem.get("customer") or {}
        signed = (conversation.customer.email or "").lower() or None
        proved = trust.proved_emails(signed, mem)
        typed = (mem.get("email") or "").lower()
        target, verified = None, True
        if typed and typed in proved:
            target = typed
        elif signed:
            target = signed
        elif proved:
            target = sorted(proved)[0]
        else:
            verified = False
            owners = [o.get("owner") for o in mem["orders"].values() if o.get("owner")]
            if owners:
                target = str(owners[0]).lower()
        if not target or (current.get("email") == target and current.get("verified") == verified):
            return
        if current.get("email") == target and current.get("status") in ("ok", "not_found"):
            current["verified"] = verified
            return
        if not budget.take():
            return
        res = await self.actions.run(action_name, {inp: target})
        actions_run.append(res.as_dict())
        mem["customer"] = {
            "email": target,
            "verified": verified,
            "status": res.status,
            **(
                {k: v for k, v in res.captured.items() if v is not None}
                if res.status == "ok"
                else {}
            ),
        }

    # -------------------------------------------------------------- deciding

    def _defer(self, decision: Decision, mem: dict[str, Any], turn: Turn) -> bool:
        """Rules that need a fact first (e.g. the order number) ask for it once before handing off."""
        asks = decision.asks()
        if not asks or len(asks) != len(decision.matches):
            return False
        for m in asks:
            entity = m.rule.ask_for
            assert entity is not None
            if mem["entities"].get(entity):
                return False
            key = f"{m.rule.name}:{entity}"
            if key in mem["asked"]:
                return False
        first = asks[0]
        assert first.rule.ask_for is not None
        mem["asked"].append(f"{first.rule.name}:{first.rule.ask_for}")
        prompt = self.config.entities[first.rule.ask_for].prompt or self.config.messages.ask_order
        turn.reply = prompt
        return True

    def _handoff(
        self,
        turn: Turn,
        conversation: ConversationView,
        mem: dict[str, Any],
        facts: dict[str, Any],
        decision: Decision,
        *,
        extra_tags: list[str] | None = None,
        extra_reason: str = "",
        lead: str | None = None,
    ) -> None:
        tags = list(dict.fromkeys([*decision.tags, *(extra_tags or [])]))
        reason = "; ".join(r for r in (decision.reason, extra_reason) if r) or "handoff"
        # What the shopper reads uses only what they proved, whatever the store's template asks.
        expectation = handoff_expectation(
            self.config,
            decision,
            trust.proved_view(facts),
            language=str(mem.get("language") or "en"),
        )
        expectation.lead = lead
        sla = expectation.sla_minutes
        message = render_wait(expectation, None)
        sale = next((o.get("sale") for o in facts["orders"] if o.get("sale")), None)
        context = {
            "customer": facts["customer"],
            "order_owner": facts.get("order_owner"),  # an unproved order's owner: not the shopper
            "orders": facts["orders"],
            "intents": facts["intents"],
            "problem_orders": decision.problem_orders,
            "rules": [m.rule.name for m in decision.matches],
            "sla_minutes": sla,
            "actions": [a for a in turn.actions_run],
            "prepared": prepare_actions(self.config, decision, facts),  # writes to approve
        }
        turn.handoff = Handoff(
            tags=tags,
            reason=reason,
            summary=summary_text(conversation, facts, reason),
            context=context,
            priority=decision.priority,
            sale=sale,
            expectation=expectation,
        )
        turn.reply = message  # with the queue when the handoff commits (core/waiting.py)

    # -------------------------------------------------------------- answering

    def _answer(
        self,
        turn: Turn,
        conversation: ConversationView,
        mem: dict[str, Any],
        det: Any,
        text: str,
        shopper: list[MessageView],
        new_orders: list[str],
        facts: dict[str, Any],
        *,
        offer_reply: Verdict = None,
        retracted: list[str] | None = None,
    ) -> None:
        msgs = self.config.messages
        parts: list[str] = []
        orders = mem["orders"]
        # Orders whose owner is now proved and not yet reported, or that are asked about again.
        named_now = (
            set(self.extract("order_number", text, mem))
            if "order_number" in self.config.entities
            else set()
        )
        for number, order in orders.items():
            if order["lookup"] != "ok":
                continue
            if order.get("verified") and (not order.get("reported") or number in named_now):
                parts.append(render(msgs.order_status, order=order, customer=facts["customer"]))
                order["reported"] = True
        # The rest reads the same whether the order exists or not.
        parts += trust.order_replies(self.config, mem, new_orders, conversation.customer.email)
        wants_order = det.my_order and not orders and not new_orders
        if wants_order:
            parts.append(
                self.config.entities.get("order_number").prompt
                if "order_number" in self.config.entities
                else msgs.ask_order
            )

        # A question about "my order" is also searched: the store's pages may answer it (how long
        # delivery takes) while the order number is asked for.
        passage = self._search(text, shopper, det)
        if passage is not None:
            parts.append(f"{passage.text}\n(Source: {passage.source})")
            turn.sources = [passage.source]
            mem["misses"] = 0

        if retracted:
            parts.insert(0, msgs.retracted)
        if not parts:
            if offer_reply in ("decline", "retract"):
                parts.append(msgs.declined_human)
                mem["misses"] = 0
            elif det.thanks:
                parts.append(msgs.thanks)
            elif det.greeting:
                parts.append(msgs.greeting)
            elif (new_orders or extract_emails(text)) and not det.question:
                parts.append("Thanks, noted.")
            else:
                reply = self._unanswered(turn, conversation, mem, det, facts)
                if reply is None:
                    return
                parts.append(reply)
        turn.reply = "\n\n".join(parts)

    def _unanswered(
        self,
        turn: Turn,
        conversation: ConversationView,
        mem: dict[str, Any],
        det: Any,
        facts: dict[str, Any],
    ) -> str | None:
        """Nothing in the pages answers: say so and offer a person (the shopper's "yes" hands off
        as their request); a question missed again right after hands off by itself. A statement
        the agent cannot place is asked about once before the offer. None when it handed off."""
        msgs = self.config.messages
        mem["misses"] += 1
        if det.question and mem["misses"] >= self.config.knowledge.handoff_after_misses:
            self._handoff(
                turn,
                conversation,
                mem,
                facts,
                Decision(),
                extra_tags=["unanswered"],
                extra_reason="The assistant had no answer in the store's content",
                lead=msgs.dont_know,
            )
            return None
        if det.question or mem["misses"] >= 2:
            mem["offered"] = True
            return msgs.offer_human
        return msgs.rephrase

    def _without_entities(self, text: str) -> str:
        for entity in self.config.entities.values():
            text = re.sub(entity.pattern, " ", text, flags=re.IGNORECASE)
        return EMAIL.sub(" ", text)

    def _search(self, text: str, shopper: list[MessageView], det: Any) -> Passage | None:
        """The passage that answers, or None when none is good enough (the caller then says
        plainly that it does not know). A short follow-up that is not enough on its own ("and
        how long does that take?") is read with the last substantive message as context."""
        bare = self._without_entities(text)
        words = content_words(bare)
        if len(words) < 2 or (det.thanks and not det.question) or det.greeting:
            return None
        threshold = self.config.knowledge.min_confidence
        hits = self.kb.search(bare, k=1)
        if (not hits or hits[0].confidence < threshold) and len(words) < 4:
            earlier = [
                self._without_entities(m.text)
                for m in shopper[:-1]
                if len(content_words(self._without_entities(m.text))) >= 2
            ]
            if earlier:
                hits = self.kb.search(bare, k=1, context=earlier[-1])
        return hits[0] if hits and hits[0].confidence >= threshold else None
