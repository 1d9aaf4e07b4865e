"""Route selection: path normalization, host names, domain patterns and route precedence."""

from __future__ import annotations

import pytest

from bastion.gateway.routing import (
    BadPath,
    DomainTable,
    RouteMatcher,
    RouteSpec,
    host_of,
    normalize_path,
    shadowed_routes,
)

# --- normalize_path ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        # already canonical: unchanged
        ("/", "/"),
        ("/api/v1/users", "/api/v1/users"),
        ("/a/b/", "/a/b/"),
        ("/a.b/c..d/.e", "/a.b/c..d/.e"),
        # runs of slashes collapse
        ("//admin", "/admin"),
        ("///admin//x", "/admin/x"),
        ("/a//b//", "/a/b/"),
        # dot-segments (RFC 3986 §5.2.4)
        ("/a/../admin", "/admin"),
        ("/a/./b", "/a/b"),
        ("/a/.", "/a/"),
        ("/a/..", "/"),
        ("/a/b/../../c", "/c"),
        # `..` above the root stays at the root
        ("/..", "/"),
        ("/../..", "/"),
        ("/../admin", "/admin"),
        ("/a/../../../admin", "/admin"),
        # percent-encoded unreserved characters are decoded, then dot-segments removed
        ("/%2e%2e/admin", "/admin"),
        ("/%2E%2E/admin", "/admin"),
        ("/.%2e/admin", "/admin"),
        ("/a/%2e%2e/admin", "/admin"),
        ("/a/%2e", "/a/"),
        ("/%61dmin", "/admin"),
        ("/%41%42", "/AB"),
        ("/%7e", "/~"),
        ("/%2D%5F", "/-_"),
        # other escapes stay encoded with upper-case hex; %2F is never a separator
        ("/a%2fb", "/a%2Fb"),
        ("/a%2Fb", "/a%2Fb"),
        ("/a%2F..%2Fadmin", "/a%2F..%2Fadmin"),
        ("/%3a%3f", "/%3A%3F"),
        ("/%00", "/%00"),
        ("/%c3%a9", "/%C3%A9"),
        # characters outside ASCII are percent-encoded as UTF-8
        ("/caf\u00e9", "/caf%C3%A9"),
        ("/\u00e9%41", "/%C3%A9A"),
        ("/\u65e5\u672c", "/%E6%97%A5%E6%9C%AC"),
        ("/a b%41", "/a%20bA"),
    ],
)
def test_normalize_path_gives_one_canonical_form(raw: str, normalized: str) -> None:
    assert normalize_path(raw) == normalized


@pytest.mark.parametrize(
    "raw",
    ["/", "//admin", "/a/../b/./c", "/%2e%2e/%61dmin", "/a%2fb", "/caf\u00e9", "/a/b/"],
)
def test_normalize_path_is_idempotent(raw: str) -> None:
    once = normalize_path(raw)
    assert normalize_path(once) == once


@pytest.mark.parametrize(
    "raw",
    ["//admin", "/a/../admin", "/%2e%2e/admin", "/%61dmin", "/x/%2E%2E/%61dmin", "/./admin"],
)
def test_every_bypass_spelling_of_admin_normalizes_to_admin(raw: str) -> None:
    assert normalize_path(raw) == "/admin"


@pytest.mark.parametrize(
    "raw",
    [
        "/%",  # truncated escape
        "/%4",
        "/a%4",
        "/%zz",  # not hex
        "/%g1",
        "/%%41",
        "",  # not origin-form
        "admin",
        "%2Fadmin",
        "*",
        "http://example.com/",
    ],
)
def test_normalize_path_refuses_what_cannot_be_a_path(raw: str) -> None:
    with pytest.raises(BadPath):
        normalize_path(raw)


def test_bad_path_is_a_value_error() -> None:
    assert issubclass(BadPath, ValueError)


@pytest.mark.parametrize(("raw", "normalized"), [("/a b", "/a%20b"), ("/x\x7f", "/x%7F")])
def test_ascii_space_and_controls_are_percent_encoded_without_another_escape(
    raw: str, normalized: str
) -> None:
    assert normalize_path(raw) == normalized


# --- host_of ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("example.com", "example.com"),
        ("Api.Test.COM", "api.test.com"),
        ("Api.Test.com:80", "api.test.com"),
        ("example.com:8443", "example.com"),
        ("example.com.", "example.com"),
        ("example.com.:8080", "example.com"),
        ("  example.com  ", "example.com"),
        ("1.2.3.4:5", "1.2.3.4"),
        ("[::1]", "[::1]"),
        ("[::1]:8080", "[::1]"),
        ("[2001:DB8::1]:443", "[2001:db8::1]"),
        ("", ""),
    ],
)
def test_host_of_lowercases_and_strips_port_and_trailing_dot(header: str, host: str) -> None:
    assert host_of(header) == host


# --- DomainTable ------------------------------------------------------------------------------


@pytest.fixture
def domains() -> DomainTable[str]:
    return DomainTable(
        [
            ("*.example.com", "wild"),
            ("*.b.example.com", "wild-b"),
            ("a.b.example.com", "exact-ab"),
            ("test.com", "exact-test"),
        ]
    )


@pytest.mark.parametrize(
    ("host", "best", "all_matches"),
    [
        ("a.b.example.com", "exact-ab", ["exact-ab", "wild-b", "wild"]),  # exact beats wildcards
        ("x.b.example.com", "wild-b", ["wild-b", "wild"]),  # longer wildcard beats shorter
        ("b.example.com", "wild", ["wild"]),  # apex of *.b.example.com: not matched by it
        ("x.example.com", "wild", ["wild"]),
        ("x.y.z.example.com", "wild", ["wild"]),  # any depth
        ("example.com", None, []),  # never the apex
        (".example.com", None, []),
        ("notexample.com", None, []),  # a label boundary, not a string suffix
        ("example.com.evil.org", None, []),
        ("test.com", "exact-test", ["exact-test"]),
        ("x.test.com", None, []),  # an exact name has no sub-domains
        ("other.org", None, []),
        ("", None, []),
    ],
)
def test_domain_table_orders_matches_most_specific_first(
    domains: DomainTable[str], host: str, best: str | None, all_matches: list[str]
) -> None:
    assert list(domains.matches(host)) == all_matches
    assert domains.best(host) == best


def test_domain_table_exact_and_wildcard_on_the_same_name_are_independent() -> None:
    table = DomainTable([("example.com", "apex"), ("*.example.com", "subs")])
    assert table.best("example.com") == "apex"
    assert table.best("www.example.com") == "subs"


def test_empty_domain_table_is_falsy_and_matches_nothing() -> None:
    table: DomainTable[str] = DomainTable([])
    assert not table
    assert table.best("example.com") is None
    assert DomainTable([("a.com", 1)])


# --- RouteMatcher -----------------------------------------------------------------------------


def spec(name: str, path: str = "/", path_type: str = "prefix", *domains: str) -> RouteSpec[str]:
    return RouteSpec(domains=list(domains), path=path, path_type=path_type, value=name)


HOST_GROUPS = [
    spec("any", "/", "prefix"),
    spec("wild", "/", "prefix", "*.example.com"),
    spec("wild-deep", "/", "prefix", "*.b.example.com"),
    spec("exact", "/", "prefix", "a.b.example.com"),
]


@pytest.mark.parametrize(
    ("host", "route"),
    [
        ("a.b.example.com", "exact"),  # exact host group first
        ("x.b.example.com", "wild-deep"),  # then the longest wildcard
        ("x.example.com", "wild"),
        ("example.com", "any"),  # the apex is not *.example.com: routes without domains
        ("other.org", "any"),
    ],
)
def test_matcher_prefers_the_most_specific_host_group(host: str, route: str) -> None:
    # reversed file order must not change the answer
    for specs in (HOST_GROUPS, HOST_GROUPS[::-1]):
        assert RouteMatcher(specs).match(host, "/x") == route


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/exact-only", "exact"),  # matched in the exact host group
        ("/wild-only", "wild"),  # exact group has no such path: fall back to the wildcard group
        ("/any-only", "any"),  # neither host group: fall back to routes without domains
        ("/nowhere", None),
    ],
)
def test_matcher_falls_back_to_less_specific_host_groups(path: str, route: str | None) -> None:
    matcher = RouteMatcher(
        [
            spec("any", "/any-only", "prefix"),
            spec("wild", "/wild-only", "prefix", "*.example.com"),
            spec("exact", "/exact-only", "prefix", "api.example.com"),
        ]
    )
    assert matcher.match("api.example.com", path) == route


def test_a_host_group_with_a_matching_path_hides_less_specific_groups() -> None:
    matcher = RouteMatcher(
        [
            spec("any-exact-path", "/users", "exact"),
            spec("host-prefix", "/", "prefix", "api.example.com"),
        ]
    )
    # specificity of the host decides before the path type does
    assert matcher.match("api.example.com", "/users") == "host-prefix"
    assert matcher.match("other.com", "/users") == "any-exact-path"


def test_route_with_several_domains_is_in_each_host_group() -> None:
    matcher = RouteMatcher([spec("multi", "/", "prefix", "test.com", "*.example.com")])
    assert matcher.match("test.com", "/") == "multi"
    assert matcher.match("a.example.com", "/") == "multi"
    assert matcher.match("example.com", "/") is None


PATH_TYPES = [
    spec("prefix-root", "/", "prefix"),
    spec("prefix-api", "/api", "prefix"),
    spec("prefix-api-v1-long", "/api/v1/users/long", "prefix"),
    spec("regex-api", r"/api/v\d+/.*", "regex"),
    spec("exact-users", "/api/v1/users", "exact"),
]


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/api/v1/users", "exact-users"),  # exact beats regex and prefix
        ("/api/v1/users/long", "regex-api"),  # regex beats even a longer prefix
        ("/api/v2/x", "regex-api"),
        ("/api", "prefix-api"),  # the regex does not match the whole path
        ("/apix", "prefix-api"),  # prefix is a plain string prefix
        ("/other", "prefix-root"),
    ],
)
def test_within_a_host_group_exact_beats_regex_beats_prefix(path: str, route: str) -> None:
    assert RouteMatcher(PATH_TYPES).match("h", path) == route
    assert RouteMatcher(PATH_TYPES[::-1]).match("h", path) == route  # file order never matters


@pytest.mark.parametrize(
    ("order", "route"), [(["narrow", "broad"], "narrow"), (["broad", "narrow"], "broad")]
)
def test_overlapping_regexes_are_tried_in_file_order(order: list[str], route: str) -> None:
    patterns = {"narrow": r"/api/v\d+/.*", "broad": r"/api/.*"}
    matcher = RouteMatcher([spec(name, patterns[name], "regex") for name in order])
    assert matcher.match("h", "/api/v1/x") == route
    assert matcher.match("h", "/api/x") == "broad"


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/a/b/c", "long"),
        ("/a/bc", "long"),  # plain string prefix, not segment-wise
        ("/a/x", "short"),
        ("/ab", "short"),
        ("/", "root"),
        ("/b", "root"),
    ],
)
def test_longest_prefix_wins_regardless_of_file_order(path: str, route: str) -> None:
    specs = [spec("root", "/"), spec("short", "/a"), spec("long", "/a/b")]
    assert RouteMatcher(specs).match("h", path) == route
    assert RouteMatcher(specs[::-1]).match("h", path) == route


@pytest.mark.parametrize(
    ("path", "matches"),
    [
        ("/v1/users", True),
        ("/v1/users/", False),  # fullmatch: a prefix match of the regex is not enough
        ("/prefix/v1/users", False),  # nor a search inside the path
        ("/v12/users", True),
    ],
)
def test_regex_must_match_the_whole_path(path: str, matches: bool) -> None:
    matcher = RouteMatcher([spec("re", r"/v\d+/users", "regex")])
    assert (matcher.match("h", path) == "re") is matches


def test_exact_path_does_not_match_a_longer_path_or_trailing_slash() -> None:
    matcher = RouteMatcher([spec("exact", "/login", "exact")])
    assert matcher.match("h", "/login") == "exact"
    assert matcher.match("h", "/login/") is None
    assert matcher.match("h", "/login2") is None


def test_duplicate_exact_paths_keep_the_first_in_file_order() -> None:
    matcher = RouteMatcher([spec("first", "/x", "exact"), spec("second", "/x", "exact")])
    assert matcher.match("h", "/x") == "first"


def test_equal_prefixes_keep_the_first_in_file_order() -> None:
    matcher = RouteMatcher([spec("first", "/x"), spec("second", "/x")])
    assert matcher.match("h", "/x/y") == "first"


def test_matcher_without_routes_matches_nothing() -> None:
    assert RouteMatcher([]).match("example.com", "/") is None


def test_matcher_with_only_domain_routes_has_no_catch_all() -> None:
    matcher = RouteMatcher([spec("a", "/", "prefix", "a.com")])
    assert matcher.match("b.com", "/") is None


def test_matcher_compares_against_the_normalized_path() -> None:
    matcher = RouteMatcher([spec("admin", "/admin", "exact"), spec("rest", "/")])
    for raw in ("//admin", "/a/../admin", "/%2e%2e/admin", "/%61dmin"):
        assert matcher.match("h", normalize_path(raw)) == "admin"
    assert matcher.match("h", normalize_path("/a%2Fadmin")) == "rest"


# --- shadowed_routes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("specs", "pairs"),
    [
        ([spec("a", "/x"), spec("b", "/y")], []),
        ([spec("a", "/x"), spec("b", "/x")], [(0, 1)]),
        ([spec("a", "/x", "prefix"), spec("b", "/x", "exact")], []),  # a different type
        ([spec("a", "/x", "prefix", "a.com"), spec("b", "/x", "prefix", "b.com")], []),
        ([spec("a", "/x", "prefix", "a.com"), spec("b", "/x", "prefix")], []),  # any host vs a.com
        # b shares a.com with a
        (
            [spec("a", "/x", "prefix", "a.com"), spec("b", "/x", "prefix", "b.com", "a.com")],
            [(0, 1)],
        ),
        ([spec("a", "/x"), spec("b", "/x"), spec("c", "/x")], [(0, 1), (0, 2)]),
        ([spec("a", r"/v\d", "regex"), spec("b", r"/v\d", "regex")], [(0, 1)]),
        # a route listing the same domain twice does not shadow itself
        ([spec("a", "/x", "prefix", "a.com", "a.com")], []),
    ],
)
def test_shadowed_routes_finds_later_routes_that_can_never_match(
    specs: list[RouteSpec[str]], pairs: list[tuple[int, int]]
) -> None:
    assert shadowed_routes(specs) == pairs
