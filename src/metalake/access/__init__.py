"""Access control: principals, groups, tokens and grants as lake tables (`lake.access`), and the decisions the
server makes from them."""

from metalake.access.access import Access, AccessLogEntry, Decision, IssuedToken, Readable
from metalake.access.securables import LAKE, parse_privilege, parse_securable
from metalake.access.state import Grant, PrincipalRecord, TokenRecord

__all__ = [
    "LAKE",
    "Access",
    "AccessLogEntry",
    "Decision",
    "Grant",
    "IssuedToken",
    "PrincipalRecord",
    "Readable",
    "TokenRecord",
    "parse_privilege",
    "parse_securable",
]
