"""Shop vocabulary across languages, so a German, Spanish, French, Dutch or Portuguese question can
be ranked against English help pages.

It is generic online-retail vocabulary (deliver, return, refund, cost, order, size, account, ...)
plus country names, never any one store's words. Each entry maps word beginnings in the other
languages (accents folded, 'ß' as 'ss') to the English words help pages use, so inflections and
German compounds ("Versandkosten" = shipping + cost) are covered without a dictionary of every form.
Words it does not know are still matched through character n-grams (cognates: "Irlanda", "PayPal")."""

from __future__ import annotations

import re
from functools import lru_cache

# (English words a help page would use, beginnings of the same word in de/fr/es/nl/pt)
CONCEPTS: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (
        ("delivery", "deliver", "shipping", "ship", "dispatch"),
        (
            "liefer",
            "geliefer",
            "versand",
            "versend",
            "verschick",
            "zustell",
            "livr",
            "expedi",
            "envoi",
            "envoy",
            "envio",
            "envia",
            "enviar",
            "envie",
            "entreg",
            "bezorg",
            "verzend",
            "verstuur",
            "verzond",
            "lever",
            "geleverd",
            "remess",
            "frete",
            "porto",
        ),
    ),
    (
        ("return", "returns", "send", "back"),
        (
            "zuruck",
            "zurueck",
            "rucksend",
            "ruecksend",
            "ruckgab",
            "rueckgab",
            "retour",
            "retourn",
            "renvoi",
            "renvoy",
            "devol",
            "devuelv",
            "terugstu",
            "terugzend",
            "terugbreng",
            "terugsturen",
            "retorn",
        ),
    ),
    (
        ("refund", "money", "back"),
        (
            "erstatt",
            "ruckerstatt",
            "rueckerstatt",
            "rembours",
            "reembols",
            "terugbetal",
            "geld",
            "argent",
            "dinero",
            "dinheiro",
        ),
    ),
    (("exchange", "swap"), ("umtausch", "tausch", "echang", "cambi", "ruil", "troc", "troqu")),
    (
        ("cost", "price", "charge", "fee"),
        (
            "kost",
            "preis",
            "gebuhr",
            "gebuehr",
            "cout",
            "prix",
            "tarif",
            "frais",
            "cuest",
            "costo",
            "coste",
            "precio",
            "gasto",
            "prijs",
            "tarief",
            "custa",
            "custo",
            "preco",
            "taxa",
            "cobr",
        ),
    ),
    (("free",), ("kostenlos", "gratis", "gratuit", "umsonst")),
    (
        ("pay", "payment"),
        ("zahl", "bezahl", "paie", "paiement", "payer", "pago", "pagar", "pague", "betal", "pagam"),
    ),
    (("card",), ("karte", "carte", "tarjeta", "kaart", "cartao")),
    (("order",), ("bestell", "command", "pedido", "pedi", "bestel", "encomend", "orden")),
    (
        ("cancel", "cancellation"),
        ("stornier", "storno", "abbestell", "annul", "cancel", "anul", "annuleer", "annuler"),
    ),
    (("size",), ("grosse", "groesse", "taille", "talla", "maat", "tamanho", "tamano")),
    (("small", "size"), ("klein", "petit", "pequen", "kleine")),
    (("large", "size"), ("grand", "groot", "gross")),
    (("account",), ("konto", "compte", "cuenta", "conta")),
    (("password",), ("passwort", "kennwort", "contrasena", "wachtwoord", "senha")),
    (
        ("sign", "login"),
        ("anmeld", "einlogg", "connexion", "connect", "inlogg", "aanmeld", "iniciar", "sesion"),
    ),
    (
        ("discount", "code", "voucher"),
        (
            "rabatt",
            "gutschein",
            "ermassig",
            "reduction",
            "remise",
            "descuento",
            "cupon",
            "korting",
            "desconto",
            "cupom",
            "promo",
        ),
    ),
    (("gift",), ("geschenk", "cadeau", "regalo", "presente")),
    (
        ("long", "days", "take", "time"),
        (
            "dauer",
            "dauert",
            "delai",
            "tarda",
            "plazo",
            "duurt",
            "demor",
            "prazo",
            "lange",
            "temps",
            "tiempo",
            "tempo",
        ),
    ),
    (("when",), ("wann", "quand", "cuando", "wanneer", "quando")),
    (
        ("tracking", "track"),
        ("sendungsverfolg", "verfolg", "suivi", "seguimiento", "rastre", "volgen", "traceer"),
    ),
    (("customs", "duties", "import"), ("zoll", "douane", "aduana", "alfandega", "invoer")),
    (("tax", "vat"), ("steuer", "mwst", "taxe", "impuesto", "iva", "belasting", "btw", "impost")),
    (("invoice",), ("rechnung", "factur", "factuur", "fatura")),
    (("guarantee", "warranty"), ("garanti",)),
    (
        ("damaged", "faulty", "broken"),
        (
            "beschadig",
            "kaputt",
            "defekt",
            "casse",
            "endommag",
            "defectu",
            "roto",
            "rota",
            "danad",
            "kapot",
            "defect",
            "quebrad",
            "danific",
            "avariad",
        ),
    ),
    (("wrong",), ("falsch", "mauvais", "equivocad", "incorrect", "verkeerd", "errad")),
    (("subscription",), ("abonnement", "abo", "suscrip", "assinatura")),
    (("pause", "skip"), ("pausier", "pausar", "pauzer", "aussetz", "overslaan", "saltar")),
    (
        ("stock", "available"),
        (
            "verfugbar",
            "verfuegbar",
            "lieferbar",
            "vorratig",
            "disponib",
            "beschikbaar",
            "voorraad",
            "estoque",
        ),
    ),
    (("points",), ("punkte", "puntos", "punten", "pontos")),
    (
        ("expire", "expired", "valid"),
        (
            "verfall",
            "ablauf",
            "abgelaufen",
            "gultig",
            "gueltig",
            "expir",
            "caduc",
            "vencid",
            "verlop",
            "geldig",
            "valido",
            "valida",
        ),
    ),
    (
        ("sale", "offer", "deal"),
        (
            "angebot",
            "aktion",
            "sonderangebot",
            "offre",
            "soldes",
            "oferta",
            "rebaja",
            "aanbieding",
            "uitverkoop",
            "actie",
            "promocao",
            "promocion",
        ),
    ),
    (("next",), ("nachst", "naechst", "prochain", "proxim", "volgend")),
    (("status",), ("statut", "estado", "estatus")),
    (
        ("pending", "waiting"),
        ("attente", "ausstehend", "pendiente", "pendente", "wachtend", "behandeling"),
    ),
    (("voucher",), ("tegoed", "vale")),
    (
        ("close", "delete"),
        (
            "schliess",
            "losch",
            "loesch",
            "ferm",
            "supprim",
            "cerrar",
            "borrar",
            "elimin",
            "sluit",
            "verwijder",
            "opheff",
            "fechar",
            "apagar",
            "exclu",
        ),
    ),
    (("warehouse",), ("lager", "entrepot", "almacen", "magazijn", "armazem")),
    (
        ("shop", "store", "showroom"),
        (
            "laden",
            "geschaft",
            "geschaeft",
            "filiale",
            "magasin",
            "boutique",
            "tienda",
            "winkel",
            "loja",
        ),
    ),
    (
        ("collect", "pickup"),
        ("abhol", "retirer", "recoger", "ophal", "buscar", "levantar"),
    ),
    (
        ("authentic", "genuine", "fake"),
        (
            "echt",
            "falschung",
            "faelschung",
            "contrefa",
            "autenti",
            "authenti",
            "nep",
            "falsific",
            "falsif",
            "imitac",
            "namaak",
        ),
    ),
    (("fit", "size"), ("passen", "passt", "convien", "queda")),
    (
        ("opening", "hours", "open"),
        (
            "offnungszeit",
            "oeffnungszeit",
            "geoffnet",
            "horaire",
            "ouvert",
            "horario",
            "abiert",
            "openingstijd",
            "geopend",
            "abert",
        ),
    ),
    (
        ("phone", "call"),
        ("telefon", "anruf", "appel", "llamar", "bellen", "ligar", "telephon"),
    ),
    (("email",), ("correo", "mail")),
    (("address",), ("adress", "direccion", "adres", "endereco")),
    (("weekend",), ("wochenende",)),
    (("working", "day"), ("werktag", "werkdag", "ouvrable", "habil", "util")),
    (("today",), ("heute", "aujourd", "hoy", "vandaag", "hoje")),
    (("express", "fast"), ("schnell", "rapide", "rapido", "snel", "eilig")),
    (
        ("international", "abroad", "outside"),
        ("ausland", "etranger", "extranjero", "buitenland", "estrangeiro"),
    ),
    # Country names: geography, not any store's words.
    (("germany",), ("deutschland", "allemagne", "alemania", "duitsland", "alemanha")),
    (("france",), ("frankreich", "francia", "frankrijk", "franca")),
    (("spain",), ("spanien", "espagne", "espana", "spanje", "espanha")),
    (("ireland",), ("irland", "irlande", "irlanda", "ierland")),
    (("austria",), ("osterreich", "oesterreich", "autriche", "oostenrijk")),
    (("switzerland",), ("schweiz", "suisse", "suiza", "zwitserland", "suica")),
    (
        ("netherlands",),
        ("niederland", "pays-bas", "paises bajos", "nederland", "holanda", "hollande"),
    ),
    (("belgium",), ("belgien", "belgique", "belgica", "belgie")),
    (("italy",), ("italien", "italie", "italia")),
    (
        ("united", "kingdom", "uk"),
        (
            "grossbritannien",
            "royaume-uni",
            "reino unido",
            "verenigd koninkrijk",
            "england",
            "angleterre",
            "inglaterra",
            "engeland",
        ),
    ),
    (("norway",), ("norwegen", "norvege", "noruega", "noorwegen")),
    (("sweden",), ("schweden", "suede", "suecia", "zweden")),
    (("denmark",), ("danemark", "dinamarca", "denemarken")),
    (("poland",), ("polen", "pologne", "polonia")),
    (("luxembourg",), ("luxemburg", "luxemburgo")),
    (
        ("united", "states", "usa"),
        ("vereinigte staaten", "etats-unis", "estados unidos", "verenigde staten"),
    ),
    (("europe",), ("europa",)),
    # Italian and Swedish (accents folded: "å", "ä" as "a", "ö" as "o")
    (
        ("delivery", "deliver", "shipping", "ship", "dispatch"),
        ("spedi", "consegn", "recapit", "leverans", "leverera", "skicka", "skickas", "frakt"),
    ),
    (("return", "returns", "send", "back"), ("restitu", "reso", "returnera", "returer")),
    (("refund", "money", "back"), ("rimbors", "aterbetal")),
    (("exchange", "swap"), ("sostitu", "byta", "byte")),
    (
        ("cost", "price", "charge", "fee"),
        ("prezz", "spese", "costa", "costo", "costi", "kostar", "kostnad", "pris"),
    ),
    (("free",), ("kostnadsfri",)),
    (("pay", "payment"), ("pagament", "pagare", "pagat")),
    (("card",), ("carta", "kortet", "kreditkort", "betalkort")),
    (("order",), ("ordin", "bestall")),
    (("cancel", "cancellation"), ("avbestall", "avboka", "makuler")),
    (("size",), ("taglia", "misur", "storlek")),
    (("password",), ("losenord",)),
    (("discount", "code", "voucher"), ("sconto", "codic", "buono", "rabattkod")),
    (
        ("long", "days", "take", "time"),
        ("giorni", "tempo", "dagar", "hur lang", "leveranstid", "quanto ci vuole"),
    ),
    (("germany",), ("germania", "tyskland")),
    (("france",), ("frankrike",)),
    (("spain",), ("spagna",)),
    (("netherlands",), ("paesi bassi", "nederlanderna")),
    (("belgium",), ("belgio",)),
    (("united", "kingdom", "uk"), ("regno unito", "storbritannien")),
    (("austria",), ("osterrike",)),
    (("switzerland",), ("svizzera",)),
    (("sweden",), ("svezia", "sverige")),
    (("norway",), ("norvegia", "norge")),
    (("denmark",), ("danimarca", "danmark")),
    (("tracking", "track"), ("tracciam", "traccia", "sparning")),
    (("customs", "duties", "import"), ("dogan", "tullavgift")),
    (("tax", "vat"), ("moms",)),
    (("invoice",), ("fattur", "faktura")),
    (("guarantee", "warranty"), ("garanz",)),
    (("damaged", "faulty", "broken"), ("danneggi", "difettos", "guast", "trasig", "skadad")),
    (("wrong",), ("sbagliat", "felaktig")),
    (("subscription",), ("abbonament", "prenumer")),
    (("stock", "available"), ("disponibil", "esaurit", "slutsald", "tillganglig")),
    (("expire", "expired", "valid"), ("scadut", "scadenz", "giltig")),
    (("sale", "offer", "deal"), ("offert", "promozion", "saldi", "erbjud", "kampanj")),
    (("next",), ("prossim", "nasta")),
    (("close", "delete"), ("elimin", "chiuder", "radera", "avsluta")),
    (("warehouse",), ("magazzin",)),
    (("shop", "store", "showroom"), ("negozi", "butik")),
    (("collect", "pickup"), ("ritir", "hamta")),
    (("phone", "call"), ("chiamar",)),
    (("email",), ("mejl",)),
    (("address",), ("indirizz",)),
    (("working", "day"), ("lavorativ", "vardag", "arbetsdag")),
    (("today",), ("oggi", "idag")),
    (("express", "fast"), ("veloc", "snabb")),
    (("international", "abroad", "outside"), ("estero", "utomlands", "utland")),
    (("opening", "hours", "open"), ("orari", "oppettid")),
    # Generic words of many trades (food, cosmetics, pet food), in all seven languages.
    (("allergy", "allergic", "patch", "test"), ("allerg",)),
    (("ingredients", "ingredient"), ("ingredi", "inhaltsstoff", "zutat", "ingredienser")),
    (
        ("limit", "maximum", "per", "customer"),
        ("limite", "maxim", "massim", "hochst", "maximal", "begrans"),
    ),
    (
        ("start", "starts", "begin"),
        ("empiez", "empieza", "comienz", "commenc", "beginn", "inizi", "comeca", "borja"),
    ),
    (("end", "ends", "finish"), ("termin", "acab", "finisc", "endet", "eindig", "slutar")),
]

# Function words of the five languages: they say nothing about what is asked.
FOREIGN_STOPWORDS = frozenset(
    """ich du er sie es wir ihr mein meine meinen meiner mich mir dich dir sich uns euch ihnen
    der die das den dem des ein eine einen einem einer und oder aber auch noch schon nur nicht
    kein keine ist sind war waren bin bist hat habe haben hatte wird werden wurde kann konnen
    konnte mochte muss mussen darf soll sollte mit von zu zum zur bei nach aus fur uber unter
    auf an in im am vom bis wie was wo wer warum welche welcher welches wenn dass ob so da hier
    dort bitte danke hallo guten tag abend morgen gern gerne mal doch ja nein sehr viel viele zu
    trop demasiado te
    je tu il elle nous vous ils elles mon ma mes ton ta tes son sa ses notre votre leur le la
    les un une des du de et ou mais aussi pas ne est sont suis ai as avons avez ont etre avoir
    peux peut pouvez pouvons puis veux voudrais faut pour par avec sans sur sous dans en au aux
    ce cet cette ces qui que quoi comment combien pourquoi quel quelle quels quelles si oui non
    merci bonjour bonsoir salut tres est-ce
    yo tu el ella nosotros vosotros ellos ellas mi mis tu tus su sus nuestro lo los las una unos
    unas y o pero tambien no es son soy estoy esta estan he ha han hay tengo tiene tienen puedo
    puede pueden quiero quisiera debo para por con sin sobre en al del que como cual cuales
    donde cuanto cuanta cuantos cuantas porque si gracias hola buenos buenas dias muy mucho
    ik jij je hij zij wij jullie mijn uw zijn haar ons onze het een en of maar ook niet geen
    ben bent heb hebt hebben had kan kunnen kunt wil wilt zou moet mag voor met van naar bij op
    aan uit over wat hoe waar wie welke waarom dat dit deze die er hier daar dank bedankt hoi
    hallo goedemorgen goedemiddag graag erg veel nog al
    eu ele ela nos voces eles elas meu minha meus minhas seu sua seus suas um uma uns umas e ou
    mas tambem nao sou estou tem tenho temos posso pode podem quero gostaria preciso para pelo
    pela com sem sobre em no na nos nas do da dos das ao aos que como qual quais onde porque
    sim obrigado obrigada ola bom boa muito
    io lui lei noi voi loro mio miei mie tuo tua suo sua il lo gli uno ma anche non sono sei
    siamo ho hai abbiamo hanno posso puoi puo possiamo potete voglio vorrei devo per con senza
    nel nella nello al alla ai alle del della dello dei delle di da che come cosa dove quanto
    perche quale quali se grazie ciao buongiorno buonasera salve molto gia ancora anche ce
    jag han hon vi ni min mitt mina din ditt dina sin sitt sina och eller men ocksa inte ar
    var hade kunde vill ville ska skulle maste med utan pa av till fran nar hur vad vem varfor
    vilken vilket vilka att det den denna detta som tack hej mycket redan bara""".split()
    # An English function word stays English ("a", "me", "se" counted for neither language).
) - frozenset("a i in me no so on do to he be is an as at or we it us".split())

_ENTRIES: list[tuple[str, tuple[str, ...]]] = sorted(
    ((prefix, english) for english, prefixes in CONCEPTS for prefix in prefixes),
    key=lambda e: -len(e[0]),
)
_PHRASES = [(p, e) for p, e in _ENTRIES if " " in p]
_PREFIXES = [(p, e) for p, e in _ENTRIES if " " not in p]
# Prefixes by their first two letters, longest first: a word is checked against a handful.
_BY_START: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
for _p, _e in _PREFIXES:
    _BY_START.setdefault(_p[:2], []).append((_p, _e))


def _prefix(rest: str) -> tuple[str, tuple[str, ...]] | None:
    return next(((p, e) for p, e in _BY_START.get(rest[:2], ()) if rest.startswith(p)), None)


_ENGLISH = frozenset(e for english, _ in CONCEPTS for e in english if len(e) >= 4)


@lru_cache(maxsize=8192)
def looks_foreign(word: str) -> bool:
    """A shop word of the other languages that is not also an English one ("cancel" is both)."""
    word = word.replace("ß", "ss")
    return _prefix(word) is not None and not any(word.startswith(e) for e in _ENGLISH)


# A German compound may join its parts with an 's' or 'n' ("Lieferungskosten").
_LINK = re.compile(r"^(?:s|n|en|es|e)?")


@lru_cache(maxsize=8192)
def translate_word(word: str) -> tuple[str, ...]:
    """English equivalents of one folded word: prefix matches, compounds split greedily."""
    word = word.replace("ß", "ss")
    out: list[str] = []
    rest = word
    for _ in range(3):
        hit = _prefix(rest)
        if hit is None:
            # A compound's later part: the first part may be unknown ("Kundenkonto").
            if rest is word and len(word) > 8:
                hit = next(((p, e) for p, e in _PREFIXES if len(p) >= 4 and p in word[3:]), None)
                if hit is not None:
                    out.extend(hit[1])
            break
        out.extend(hit[1])
        rest = rest[len(hit[0]) :]
        # skip the rest of this part up to a known next part (at most a few letters of ending)
        nxt = None
        for cut in range(0, min(len(rest), 6) + 1):
            tail = _LINK.sub("", rest[cut:], count=1) if cut == 0 else rest[cut:]
            if len(tail) >= 4 and _prefix(tail) is not None:
                nxt = tail
                break
        if nxt is None:
            break
        rest = nxt
    return tuple(dict.fromkeys(out))


def translate_phrases(folded: str) -> list[str]:
    """English words for the multi-word entries ("reino unido") found in folded text."""
    out: list[str] = []
    for phrase, english in _PHRASES:
        if phrase in folded:
            out.extend(english)
    return out


# "Anyway" / "still" in the other languages: no content of its own ("est-ce que je peux quand
# meme le retourner": "quand" is not "when" there). Removed before the words are read.
FOREIGN_FILLERS = re.compile(
    r"\b(?:quand meme|tout de meme|de toute facon|trotzdem|sowieso|igualmente|de todas formas|"
    r"aun asi|toch nog|hoe dan ook|comunque|lo stesso|mesmo assim|de qualquer forma|anyway)\b"
)
# Elided articles and pronouns ("j'ai", "l'ai", "qu'il", "d'un", "l'ho"): the word after them.
ELISION = re.compile(r"^(?:j|l|d|qu|c|n|s|m|t|un|dell|all|nell|sull)'")


# English shop-support paraphrases: what shoppers write -> the words help pages use for it.
# Generic to online retail; a match turns the phrase into one concept (its own words plus these),
# so "send it back" counts once, as "return", not as three loose words that match anything.
PARAPHRASES: list[tuple[str, tuple[str, ...]]] = [
    # Word families Snowball's English stemmer does not join ("deliver" / "delivery").
    (r"\bdeliver\w*", ("delivery", "deliver", "delivered")),
    (
        r"\bpay\b.{0,20}\blater\b|\bpay (?:in a month|next month|after delivery)\b",
        ("later", "pay", "instalments"),
    ),
    (r"\bpay(?:s|ing|ment|ments)?\b|\bpaid\b", ("pay", "payment", "paid")),
    (
        r"\b(?:send|give|bring|take|post|ship|mail|go|goes|come|sent)(?: [\w']+){0,3} back\b|"
        r"\bgo(?:es)? back\b|\breturning\b",
        ("return", "returns"),
    ),
    (
        r"\bnothing (?:here|came|arrived|turned up)\b|\bnever (?:arrived|came|turned up|got it)\b|"
        r"\b(?:has|have|did|is|are) not (?:arrived|come|turned up|here|received)\b|\bmissing\b|"
        r"\blost\b|\bnot (?:arrived|received)\b",
        ("arrived", "missing", "lost"),
    ),
    (r"\bmoney back\b|\breimburs\w*|\bpaid back\b|\bcredit(?:ed)? back\b", ("refund",)),
    (
        r"\barriv\w*|\bget here\b|\breach (?:me|us)\b|\bturn up\b|\bshow up\b|\bcome through\b",
        ("delivery", "delivered", "arrive"),
    ),
    (
        r"\bgo(?:es)? out\b|\bsent out\b|\bship(?:ped)? out\b|\bleave (?:the|your) warehouse\b|"
        r"\bleft (?:the|your) warehouse\b|\bsend(?:ing)? (?:it|them) (?:out|off)\b|\bposted\b|"
        r"\b(?:does|do|will|would|did) (?:it|they|my order|the order|my parcel|the parcel) leave\b",
        ("dispatch", "dispatched", "shipped", "leave"),
    ),
    (
        r"\bpostage\b|\bsent\b|\bsending\b|\bsend\b|\bposting\b|\bship(?:s|ping|ped)?\b",
        ("shipping", "delivery"),
    ),
    # "charge" and its forms, not "charger" (a product)
    (r"\bhow much\b|\bpric\w+|\bcharg(?:e|es|ed|ing)\b|\bfees?\b", ("cost", "price", "charge")),
    (r"\bextra\b|\bcustoms\b|\bimport\w*|\bduty\b|\btax\w*", ("duties", "customs", "vat", "tax")),
    (
        r"\bhow long\b|\bhow many days\b|\bhow (?:soon|quick|quickly|fast)\b",
        ("days", "time", "long"),
    ),
    (r"\b(?:do|does) not fit\b|\btoo (?:small|big|tight|large|loose)\b", ("size", "fit")),
    (r"\blegit\w*|\bfakes?\b|\breal\b|\breplica\w*|\bknock ?offs?\b", ("authentic", "genuine")),
    (
        r"\bstart\w*|\bbegin\w*|\blaunch\w*|\bgo(?:es)? live\b|\bkick off\b",
        ("live", "starts", "opens", "start"),
    ),
    (r"\bbasket\b|\btrolley\b", ("cart", "basket")),
    (r"\bsaved?\b|\bhold\w*\b|\breserv\w*|\bkept\b|\bkeep\b", ("reserve", "reserved", "held")),
    (r"\blog ?in\b|\bsign ?in\b|\blocked out\b|\bcan not get in\b", ("login", "password", "sign")),
    (r"\bcoupon\w*|\bvoucher\w*|\bpromo\w*|\bmoney off\b|\b\d+ ?% off\b", ("code", "discount")),
    (r"\bwhere is\b|\btrack\w*|\bwhere are\b", ("tracking",)),
    (r"\buk\b|\bbritain\b|\bengland\b|\bscotland\b|\bwales\b", ("united", "kingdom", "uk")),
    (r"\bexpir\w*|\bnot work\w*|\bno longer work\w*", ("expired", "valid")),
    (
        r"\bbroken\b|\bdamag\w*|\bfaulty\b|\bdefect\w*|\bcrack\w*|\bsmash\w*|\bleak\w*|\bdent\w*",
        ("damaged", "faulty"),
    ),
    (r"\bwrong (?:item|size|colou?r|product|thing)\b|\bnot what i ordered\b", ("wrong",)),
    (r"\bloyalty\b|\brewards?\b|\bpoints?\b", ("points", "rewards", "loyalty")),
    (
        r"\bsubscri\w*|\brepeat (?:order|delivery|deliveries)\b|\bregular (?:order|delivery|"
        r"deliveries)\b|\bautomatic\w*|\bevery (?:week|month|\d+ weeks)\b",
        ("subscription", "repeat", "schedule"),
    ),
    (
        r"\bput (?:it|them)? ?on hold\b|\bpause\w*|\bskip\w*|\bsuspend\w*|\bholiday\b|\bvacation\b",
        ("pause", "skip"),
    ),
    # Phoning the shop, not a phone as the thing bought ("a phone case", "my new phone")
    (
        r"\bspeak to\b|\btalk to\b|\bcall\b|\bphon(?:ed|ing)\b|\bring you\b|\bby phone\b|"
        r"\bon the phone\b|\bphone (?:you|u|them|us|me|support|line|lines|number|numbers)\b",
        ("contact", "phone", "call"),
    ),
    # "am I stuck with it?": whether it can be returned
    (r"\b(?:stuck|lumbered|left) with (?:it|them|this|that)\b", ("return", "returns")),
    (
        r"\bopening (?:hours|times)\b|\bwhat time do you (?:open|close)\b|\bare you open\b|"
        r"\bbusiness hours\b|\bwhen are you open\b",
        ("hours", "open", "opening"),
    ),
    (
        r"\bsold out\b|\bout of stock\b|\bback in stock\b|\brestock\w*|\bavailab\w*",
        ("stock", "available"),
    ),
    (r"\bwarrant\w*|\bguarant\w*", ("guarantee", "warranty")),
    (r"\breceipt\b|\binvoice\b|\bvat\b", ("invoice", "receipt", "vat")),
    (
        r"\bpay later\b|\binstal+ments?\b|\bspread (?:the|my) (?:cost|payment)\b|\bsplit (?:the|my) "
        r"(?:cost|payment)\b|\bfinanc\w*|\bmonthly payments?\b",
        ("instalments", "later", "pay"),
    ),
    (r"\beuros?\b|\bsterling\b|\bpounds\b|\bdollars?\b|\bcurrenc\w*", ("currency",)),
    (
        r"\bnotif\w*|\balert\w*|\bhear about\b|\bfind out\b|\btold when\b|\bget told\b|\bwarn\w*",
        ("alert", "notification", "announced", "email"),
    ),
    (r"\bchange\w*|\bedit\w*|\bmodif\w*|\bamend\w*|\bswitch\w*", ("change", "edit")),
    (
        r"\bdelet\w*|\bclose (?:my|the) account\b|\bremove my (?:data|account)\b",
        ("delete", "close"),
    ),
    (r"\bcollect\w*|\bpick ?(?:it|them)? ?up\b|\bpickup\b", ("collect", "pickup", "picked")),
    (r"\bgift\w*|\bpresent\b", ("gift",)),
]
