/* Egress address policy: literal parsing, classification, explicit allows. */
#include "net/addr_policy.h"
#include "core/macro.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/timeutil.h"

#define HOST_MAX 253  /* RFC 1035 presentation limit without the trailing dot */

/* Cloud instance-metadata and host-agent endpoints (credential theft targets).
 * Most live in ranges that are refused anyway; they get their own class so the
 * proxy can log "metadata" and so that an allow of 169.254/16 is visibly also an
 * allow of the metadata service. 168.63.129.16 and 100.100.100.200 are outside
 * the link-local range, which is why the exact list exists. */
static const uint32_t metadata_v4[] = {
        0xa9fea9fe,     /* 169.254.169.254: AWS, GCP, Azure, OCI, DigitalOcean, OpenStack, Hetzner, Linode */
        0xa9feaa02,     /* 169.254.170.2: AWS ECS task metadata and credentials */
        0xa9feaa17,     /* 169.254.170.23: AWS EKS Pod Identity agent */
        0xa9fe0017,     /* 169.254.0.23: Tencent Cloud metadata */
        0x646464c8,     /* 100.100.100.200: Alibaba Cloud metadata */
        0xc00000c0,     /* 192.0.0.192: Oracle Cloud legacy metadata */
        0xa83f8110,     /* 168.63.129.16: Azure WireServer (host agent, DNS, health) */
};

static const uint8_t metadata_v6[][16] = {
        { 0xfd, 0x00, 0x0e, 0xc2, [14] = 0x02, [15] = 0x54 },   /* fd00:ec2::254: AWS IMDS */
        { 0xfd, 0x00, 0x0e, 0xc2, [15] = 0x23 },                /* fd00:ec2::23: AWS EKS Pod Identity */
        { 0xfd, 0x20, 0x00, 0xce, [14] = 0x02, [15] = 0x54 },   /* fd20:ce::254: GCP metadata */
};

static bool in_v4(uint32_t a, uint32_t net, unsigned len) {
        uint32_t mask = len == 0 ? 0 : 0xffffffffu << (32 - len);
        return (a & mask) == net;
}

static enum addr_class classify_v4(uint32_t a) {
        for (size_t i = 0; i < ELEMENTSOF(metadata_v4); i++)
                if (a == metadata_v4[i])
                        return ADDR_CLASS_METADATA;

        if (in_v4(a, 0x00000000, 8))
                return ADDR_CLASS_UNSPECIFIED;
        if (in_v4(a, 0x7f000000, 8))
                return ADDR_CLASS_LOOPBACK;
        if (in_v4(a, 0x0a000000, 8) || in_v4(a, 0xac100000, 12) || in_v4(a, 0xc0a80000, 16))
                return ADDR_CLASS_PRIVATE;
        if (in_v4(a, 0xa9fe0000, 16))
                return ADDR_CLASS_LINK_LOCAL;
        if (in_v4(a, 0x64400000, 10))
                return ADDR_CLASS_CARRIER_NAT;
        if (a == 0xffffffff)
                return ADDR_CLASS_BROADCAST;
        if (in_v4(a, 0xe0000000, 4))
                return ADDR_CLASS_MULTICAST;
        if (in_v4(a, 0xc0000000, 24) ||  /* IETF protocol assignments */
            in_v4(a, 0xc0000200, 24) ||  /* TEST-NET-1 */
            in_v4(a, 0xc0586300, 24) ||  /* 6to4 relay anycast (deprecated) */
            in_v4(a, 0xc6120000, 15) ||  /* benchmarking */
            in_v4(a, 0xc6336400, 24) ||  /* TEST-NET-2 */
            in_v4(a, 0xcb007100, 24) ||  /* TEST-NET-3 */
            in_v4(a, 0xf0000000, 4))     /* future use */
                return ADDR_CLASS_RESERVED;
        return ADDR_CLASS_PUBLIC;
}

static bool all_zero(const uint8_t *b, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (b[i])
                        return false;
        return true;
}

static uint32_t be32(const uint8_t *b) {
        return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* The IPv4 address an IPv6 address leads to when the stack or the network
 * translates it, so that ::ffff:127.0.0.1 is judged as 127.0.0.1. */
static bool v6_embedded_v4(const uint8_t b[16], uint32_t *ret) {
        static const uint8_t nat64[12] = { 0x00, 0x64, 0xff, 0x9b };
        if (all_zero(b, 10) && b[10] == 0xff && b[11] == 0xff) {           /* ::ffff:0:0/96 mapped */
                *ret = be32(b + 12);
                return true;
        }
        if (all_zero(b, 12) && !(all_zero(b + 12, 3) && b[15] <= 1)) {     /* ::/96 compatible, not :: or ::1 */
                *ret = be32(b + 12);
                return true;
        }
        if (memcmp(b, nat64, 12) == 0) {                                    /* 64:ff9b::/96 NAT64 */
                *ret = be32(b + 12);
                return true;
        }
        if (b[0] == 0x20 && b[1] == 0x02) {                                 /* 2002::/16 6to4 */
                *ret = be32(b + 2);
                return true;
        }
        return false;
}

static enum addr_class classify_v6(const uint8_t b[16]) {
        for (size_t i = 0; i < ELEMENTSOF(metadata_v6); i++)
                if (memcmp(b, metadata_v6[i], 16) == 0)
                        return ADDR_CLASS_METADATA;

        if (all_zero(b, 16))
                return ADDR_CLASS_UNSPECIFIED;
        if (all_zero(b, 15) && b[15] == 1)
                return ADDR_CLASS_LOOPBACK;

        uint32_t v4;
        if (v6_embedded_v4(b, &v4))
                return classify_v4(v4);

        if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && b[4] == 0x00 && b[5] == 0x01)
                return ADDR_CLASS_PRIVATE;      /* 64:ff9b:1::/48 local-use NAT64 */
        if ((b[0] & 0xfe) == 0xfc)
                return ADDR_CLASS_PRIVATE;      /* fc00::/7 unique local */
        if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
                return ADDR_CLASS_LINK_LOCAL;   /* fe80::/10 */
        if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)
                return ADDR_CLASS_PRIVATE;      /* fec0::/10 site local (deprecated) */
        if (b[0] == 0xff)
                return ADDR_CLASS_MULTICAST;
        if (b[0] == 0x20 && b[1] == 0x01 && (b[2] & 0xfe) == 0x00)
                return ADDR_CLASS_RESERVED;     /* 2001::/23 IETF: Teredo, benchmarking, ORCHID */
        if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8)
                return ADDR_CLASS_RESERVED;     /* 2001:db8::/32 documentation */
        if (b[0] == 0x3f && b[1] == 0xff && (b[2] & 0xf0) == 0x00)
                return ADDR_CLASS_RESERVED;     /* 3fff::/20 documentation */
        if ((b[0] & 0xe0) != 0x20)
                return ADDR_CLASS_RESERVED;     /* only 2000::/3 is global unicast */
        return ADDR_CLASS_PUBLIC;
}

enum addr_class addr_classify(const struct sockaddr_storage *a) {
        if (!a)
                return ADDR_CLASS_RESERVED;
        if (a->ss_family == AF_INET) {
                const struct sockaddr_in *sin = (const struct sockaddr_in *)a;
                return classify_v4(ntohl(sin->sin_addr.s_addr));
        }
        if (a->ss_family == AF_INET6) {
                const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)a;
                return classify_v6(sin6->sin6_addr.s6_addr);
        }
        return ADDR_CLASS_RESERVED;
}

const char *addr_class_name(enum addr_class c) {
        static const char *const names[_ADDR_CLASS_MAX] = {
                [ADDR_CLASS_PUBLIC] = "public",
                [ADDR_CLASS_LOOPBACK] = "loopback",
                [ADDR_CLASS_PRIVATE] = "private",
                [ADDR_CLASS_LINK_LOCAL] = "link_local",
                [ADDR_CLASS_METADATA] = "metadata",
                [ADDR_CLASS_CARRIER_NAT] = "carrier_nat",
                [ADDR_CLASS_UNSPECIFIED] = "unspecified",
                [ADDR_CLASS_MULTICAST] = "multicast",
                [ADDR_CLASS_BROADCAST] = "broadcast",
                [ADDR_CLASS_RESERVED] = "reserved",
        };
        if ((unsigned)c >= _ADDR_CLASS_MAX)
                return "invalid";
        return names[c];
}

/* One IPv4 part as inet_aton() reads it: 0x hex (digits optional, as glibc and
 * WHATWG), leading-0 octal, else decimal. Values above 2^32-1 are errors. */
static int parse_v4_number(const char *s, size_t len, uint64_t *ret) {
        unsigned base = 10;
        size_t i = 0;

        if (len == 0)
                return -EINVAL;
        if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
                base = 16, i = 2;
        else if (len >= 2 && s[0] == '0')
                base = 8, i = 1;

        uint64_t v = 0;
        for (; i < len; i++) {
                unsigned d;
                char c = s[i];
                if (c >= '0' && c <= '9')
                        d = (unsigned)(c - '0');
                else if (c >= 'a' && c <= 'f')
                        d = (unsigned)(c - 'a' + 10);
                else if (c >= 'A' && c <= 'F')
                        d = (unsigned)(c - 'A' + 10);
                else
                        return -EINVAL;
                if (d >= base)
                        return -EINVAL;
                v = v * base + d;
                if (v > 0xffffffffu)
                        return -EINVAL;
        }
        *ret = v;
        return 0;
}

/* WHATWG "ends in a number", syntactically (an overflowing value is still a
 * number, hence an error, not a name): all digits, or 0x and hex digits. */
static bool label_is_numeric(const char *s, size_t len) {
        if (len == 0)
                return false;
        if (strspn(s, "0123456789") >= len)
                return true;
        if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
                return strspn(s + 2, "0123456789abcdefABCDEF") >= len - 2;
        return false;
}

static int parse_v4(const char *s, size_t len, uint32_t *ret) {
        uint64_t parts[4];
        size_t n = 0, start = 0;

        for (size_t i = 0; i <= len; i++) {
                if (i < len && s[i] != '.')
                        continue;
                if (n == ELEMENTSOF(parts))
                        return -EINVAL;             /* "1.2.3.4.5" */
                if (parse_v4_number(s + start, i - start, &parts[n]) < 0)
                        return -EINVAL;
                n++;
                start = i + 1;
        }

        uint32_t v = 0;
        for (size_t i = 0; i + 1 < n; i++) {
                if (parts[i] > 255)
                        return -EINVAL;             /* "256.1.1.1" */
                v |= (uint32_t)parts[i] << (8 * (3 - i));
        }
        /* The last part fills the remaining bytes: 127.1 is 127.0.0.1. */
        unsigned last_bits = 8 * (unsigned)(5 - n);
        if (last_bits < 32 && parts[n - 1] >> last_bits)
                return -EINVAL;
        *ret = v | (uint32_t)parts[n - 1];
        return 1;
}

static int parse_v6(const char *host, size_t len, struct sockaddr_storage *ret) {
        char buf[INET6_ADDRSTRLEN];

        if (host[0] == '[') {
                if (len < 2 || host[len - 1] != ']')
                        return -EINVAL;
                host++, len -= 2;
        }
        if (len == 0 || len >= sizeof buf)
                return -EINVAL;
        /* Zone ids ("fe80::1%eth0", "%25eth0") pick an interface: never from a client.
         * Any other stray bracket is malformed. */
        if (memchr(host, '%', len) || memchr(host, '[', len) || memchr(host, ']', len))
                return -EINVAL;
        memcpy(buf, host, len);
        buf[len] = 0;

        struct in6_addr a;
        if (inet_pton(AF_INET6, buf, &a) != 1)
                return -EINVAL;
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ret;
        memset(ret, 0, sizeof *ret);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = a;
        return 1;
}

int addr_parse_host_literal(const char *host, struct sockaddr_storage *ret) {
        if (!host || !ret)
                return -EINVAL;
        size_t len = strnlen(host, HOST_MAX + 2);
        if (len == 0 || len > HOST_MAX + 1)
                return -EINVAL;
        if (host[0] == '[' || memchr(host, ':', len))
                return parse_v6(host, len, ret);

        if (host[len - 1] == '.')
                len--;                              /* one trailing dot: FQDN form */
        if (len == 0 || len > HOST_MAX)
                return -EINVAL;

        /* Only the name alphabet, RFC 1123 labels: this also refuses whitespace,
         * '%' escapes, '@', '/', and every non-ASCII byte (IDNs must be punycode). */
        size_t label_start = 0;
        for (size_t i = 0; i <= len; i++) {
                if (i < len && host[i] != '.') {
                        char c = host[i];
                        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                              (c >= '0' && c <= '9') || c == '-' || c == '_'))
                                return -EINVAL;
                        continue;
                }
                size_t l = i - label_start;
                if (l == 0 || l > 63 || host[label_start] == '-' || host[i - 1] == '-')
                        return -EINVAL;
                if (i == len && !label_is_numeric(host + label_start, l))
                        return 0;                   /* a name */
                label_start = i + 1;
        }

        uint32_t v;
        if (parse_v4(host, len, &v) < 0)
                return -EINVAL;
        struct sockaddr_in *sin = (struct sockaddr_in *)ret;
        memset(ret, 0, sizeof *ret);
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(v);
        return 1;
}

int addr_allow_parse(const char *s, struct addr_allow *ret) {
        char buf[INET6_ADDRSTRLEN + 2];
        const char *slash;
        size_t alen;
        unsigned plen = 0;
        bool has_len = false;

        if (!s || !ret)
                return -EINVAL;
        slash = strchr(s, '/');
        alen = slash ? (size_t)(slash - s) : strlen(s);
        if (alen == 0 || alen >= sizeof buf)
                return -EINVAL;
        memcpy(buf, s, alen);
        buf[alen] = 0;

        if (slash) {
                const char *p = slash + 1;
                if (*p == 0 || strlen(p) > 3 || strspn(p, "0123456789") != strlen(p))
                        return -EINVAL;
                plen = (unsigned)strtoul(p, NULL, 10);
                has_len = true;
        }

        struct addr_allow a = {};
        char *addr = buf;
        if (addr[0] == '[') {
                if (alen < 3 || addr[alen - 1] != ']')
                        return -EINVAL;
                addr[alen - 1] = 0;
                addr++;
                if (!strchr(addr, ':'))
                        return -EINVAL;
        }
        if (strchr(addr, '%'))
                return -EINVAL;
        if (inet_pton(AF_INET, addr, a.prefix) == 1)
                a.family = AF_INET;
        else if (inet_pton(AF_INET6, addr, a.prefix) == 1)
                a.family = AF_INET6;
        else
                return -EINVAL;

        unsigned max = a.family == AF_INET ? 32 : 128;
        if (!has_len)
                plen = max;
        if (plen == 0 || plen > max)
                return -EINVAL;
        a.prefix_len = plen;

        /* Host bits beyond the prefix: refuse rather than guess what was meant. */
        for (unsigned bit = plen; bit < max; bit++)
                if (a.prefix[bit / 8] & (0x80 >> (bit % 8)))
                        return -EINVAL;

        *ret = a;
        return 0;
}

static bool prefix_contains(const struct addr_allow *r, int family, const uint8_t *addr) {
        if (r->family != family)
                return false;
        unsigned full = r->prefix_len / 8, rest = r->prefix_len % 8;
        if (memcmp(r->prefix, addr, full) != 0)
                return false;
        if (rest == 0)
                return true;
        uint8_t mask = (uint8_t)(0xff << (8 - rest));
        return (addr[full] & mask) == r->prefix[full];
}

bool addr_policy_permits(const struct sockaddr_storage *a, const struct addr_allow *explicit_allows, size_t n) {
        uint8_t v4[4];
        const uint8_t *v6 = NULL;
        bool has_v4 = false;

        if (!a || (a->ss_family != AF_INET && a->ss_family != AF_INET6))
                return false;
        if (addr_classify(a) == ADDR_CLASS_PUBLIC)
                return true;

        if (a->ss_family == AF_INET) {
                memcpy(v4, &((const struct sockaddr_in *)a)->sin_addr, 4);
                has_v4 = true;
        } else {
                uint32_t e;
                v6 = ((const struct sockaddr_in6 *)a)->sin6_addr.s6_addr;
                if (v6_embedded_v4(v6, &e)) {
                        uint32_t be = htonl(e);
                        memcpy(v4, &be, 4);
                        has_v4 = true;
                }
        }

        for (size_t i = 0; explicit_allows && i < n; i++) {
                if (has_v4 && prefix_contains(&explicit_allows[i], AF_INET, v4))
                        return true;
                if (v6 && prefix_contains(&explicit_allows[i], AF_INET6, v6))
                        return true;
        }
        return false;
}

/* ---- inline rules: public space only ---- */

struct class_range {
        const char *cidr;
        enum addr_class cls;
};

/* Every non-public range of classify_v4()/classify_v6() (the unit test checks
 * that each network address classifies as listed), for overlap tests on rules. */
static const struct class_range nonpublic_ranges[] = {
        {"0.0.0.0/8", ADDR_CLASS_UNSPECIFIED},     {"127.0.0.0/8", ADDR_CLASS_LOOPBACK},
        {"10.0.0.0/8", ADDR_CLASS_PRIVATE},        {"172.16.0.0/12", ADDR_CLASS_PRIVATE},
        {"192.168.0.0/16", ADDR_CLASS_PRIVATE},    {"169.254.0.0/16", ADDR_CLASS_LINK_LOCAL},
        {"100.64.0.0/10", ADDR_CLASS_CARRIER_NAT}, {"255.255.255.255/32", ADDR_CLASS_BROADCAST},
        {"224.0.0.0/4", ADDR_CLASS_MULTICAST},     {"192.0.0.0/24", ADDR_CLASS_RESERVED},
        {"192.0.2.0/24", ADDR_CLASS_RESERVED},     {"192.88.99.0/24", ADDR_CLASS_RESERVED},
        {"198.18.0.0/15", ADDR_CLASS_RESERVED},    {"198.51.100.0/24", ADDR_CLASS_RESERVED},
        {"203.0.113.0/24", ADDR_CLASS_RESERVED},   {"240.0.0.0/4", ADDR_CLASS_RESERVED},
        {"168.63.129.16/32", ADDR_CLASS_METADATA},
        /* IPv6: only 2000::/3 is global unicast; inside it, IETF space,
         * documentation, and 6to4 (judged by its embedded IPv4 address) */
        {"::/3", ADDR_CLASS_RESERVED},             {"4000::/2", ADDR_CLASS_RESERVED},
        {"8000::/1", ADDR_CLASS_RESERVED},         {"2001::/23", ADDR_CLASS_RESERVED},
        {"2001:db8::/32", ADDR_CLASS_RESERVED},    {"2002::/16", ADDR_CLASS_RESERVED},
        {"3fff::/20", ADDR_CLASS_RESERVED},
};

static bool ranges_overlap(const struct addr_allow *a, const struct addr_allow *b) {
        if (a->family != b->family)
                return false;
        const struct addr_allow *wide = a->prefix_len <= b->prefix_len ? a : b;
        const struct addr_allow *narrow = wide == a ? b : a;
        return prefix_contains(wide, narrow->family, narrow->prefix);
}

/* inner lies wholly inside outer */
static bool range_within(const struct addr_allow *inner, const struct addr_allow *outer) {
        return inner->family == outer->family && inner->prefix_len >= outer->prefix_len &&
               prefix_contains(outer, inner->family, inner->prefix);
}

static struct addr_allow must_parse(const char *cidr) {
        struct addr_allow a = {};
        int r = addr_allow_parse(cidr, &a);
        assert(r == 0); /* the tables above are constants */
        (void)r;
        return a;
}

bool addr_allow_is_public(const struct addr_allow *r, enum addr_class *ret_class) {
        if (!r || (r->family != AF_INET && r->family != AF_INET6)) {
                if (ret_class)
                        *ret_class = ADDR_CLASS_RESERVED;
                return false;
        }
        for (size_t i = 0; i < ELEMENTSOF(nonpublic_ranges); i++) {
                struct addr_allow n = must_parse(nonpublic_ranges[i].cidr);
                if (ranges_overlap(r, &n)) {
                        if (ret_class) {
                                /* the class of the rule's own network address if that is
                                 * non-public (a /0-like rule overlaps many), else the range's */
                                struct sockaddr_storage ss = {.ss_family = (sa_family_t)r->family};
                                if (r->family == AF_INET)
                                        memcpy(&((struct sockaddr_in *)&ss)->sin_addr, r->prefix, 4);
                                else
                                        memcpy(&((struct sockaddr_in6 *)&ss)->sin6_addr, r->prefix, 16);
                                enum addr_class c = addr_classify(&ss);
                                *ret_class = c != ADDR_CLASS_PUBLIC ? c : nonpublic_ranges[i].cls;
                        }
                        return false;
                }
        }
        return true;
}

void addr_format(const struct sockaddr_storage *a, char *buf, size_t size) {
        if (a->ss_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)a)->sin_addr, buf, (socklen_t)size);
        else if (a->ss_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a)->sin6_addr, buf, (socklen_t)size);
        else
                snprintf(buf, size, "?");
}

void addr_allow_format(const struct addr_allow *r, char *buf, size_t size) {
        char t[INET6_ADDRSTRLEN];
        if (!inet_ntop(r->family, r->prefix, t, sizeof t))
                snprintf(t, sizeof t, "?");
        snprintf(buf, size, "%s/%u", t, r->prefix_len);
}

int addr_allow_list_parse(const char *csv, struct addr_allow **ret, size_t *ret_n, struct err_detail *reterr) {
        if (!csv)
                csv = "";
        size_t cap = 1;
        for (const char *p = csv; *p; p++)
                cap += *p == ',';
        _cleanup_free_ struct addr_allow *list = calloc(cap, sizeof *list);
        if (!list)
                return -ENOMEM;
        size_t n = 0;
        const char *p = csv;
        for (;;) {
                const char *end = strchr(p, ',');
                size_t len = end ? (size_t)(end - p) : strlen(p);
                while (len && (*p == ' ' || *p == '\t'))
                        p++, len--;
                while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
                        len--;
                char buf[INET6_ADDRSTRLEN + 8];
                if (len == 0 && (end || n > 0))
                        return err_set(reterr, -EINVAL, "cidr", "empty entry in \"%.200s\"", csv);
                if (len >= sizeof buf)
                        return err_set(reterr, -EINVAL, "cidr", "\"%.*s...\" is not a CIDR", 40, p);
                if (len) {
                        memcpy(buf, p, len);
                        buf[len] = 0;
                        if (addr_allow_parse(buf, &list[n]) < 0)
                                return err_set(reterr, -EINVAL, "cidr",
                                               "\"%s\" is not a CIDR (canonical address, prefix length 1-32 or "
                                               "1-128, no host bits beyond it)", buf);
                        n++;
                }
                if (!end)
                        break;
                p = end + 1;
        }
        *ret_n = n;
        *ret = n ? TAKE_PTR(list) : NULL;
        return 0;
}

/* ---- the platform egress floor ---- */

const char *const addr_floor_class_names[] = {"loopback", "unspecified", "link_local", "metadata", "multicast",
                                              "broadcast", "node_addresses", NULL};

static bool class_in_floor(enum addr_class c) {
        switch (c) {
        case ADDR_CLASS_LOOPBACK:
        case ADDR_CLASS_UNSPECIFIED:
        case ADDR_CLASS_LINK_LOCAL:
        case ADDR_CLASS_METADATA:
        case ADDR_CLASS_MULTICAST:
        case ADDR_CLASS_BROADCAST:
                return true;
        default:
                return false;
        }
}

/* The fixed classes as ranges, for addr_floor_covers(); the metadata
 * addresses first, so that a rule naming one is reported as such. */
static const struct class_range floor_ranges[] = {
        {"169.254.169.254/32", ADDR_CLASS_METADATA}, {"169.254.170.2/32", ADDR_CLASS_METADATA},
        {"169.254.170.23/32", ADDR_CLASS_METADATA},  {"169.254.0.23/32", ADDR_CLASS_METADATA},
        {"100.100.100.200/32", ADDR_CLASS_METADATA}, {"192.0.0.192/32", ADDR_CLASS_METADATA},
        {"168.63.129.16/32", ADDR_CLASS_METADATA},   {"fd00:ec2::254/128", ADDR_CLASS_METADATA},
        {"fd00:ec2::23/128", ADDR_CLASS_METADATA},   {"fd20:ce::254/128", ADDR_CLASS_METADATA},
        {"0.0.0.0/8", ADDR_CLASS_UNSPECIFIED},       {"127.0.0.0/8", ADDR_CLASS_LOOPBACK},
        {"169.254.0.0/16", ADDR_CLASS_LINK_LOCAL},   {"224.0.0.0/4", ADDR_CLASS_MULTICAST},
        {"255.255.255.255/32", ADDR_CLASS_BROADCAST},
        {"::/128", ADDR_CLASS_UNSPECIFIED},          {"::1/128", ADDR_CLASS_LOOPBACK},
        {"fe80::/10", ADDR_CLASS_LINK_LOCAL},        {"ff00::/8", ADDR_CLASS_MULTICAST},
};

#define NODE_ADDRS_MAX 256
#define NODE_ADDRS_TTL_US 1000000

struct addr_floor {
        struct addr_allow *ranges;
        size_t n_ranges;
        pthread_mutex_t lock;         /* guards the node addresses */
        struct addr_allow node[NODE_ADDRS_MAX];  /* /32 or /128 each */
        size_t n_node;
        int64_t node_read_us;         /* 0: never */
};

int addr_floor_new(const char *ranges, struct addr_floor **ret, struct err_detail *reterr) {
        _cleanup_free_ struct addr_floor *f = calloc(1, sizeof *f);
        if (!f)
                return -ENOMEM;
        int r = addr_allow_list_parse(ranges, &f->ranges, &f->n_ranges, reterr);
        if (r < 0)
                return r;
        pthread_mutex_init(&f->lock, NULL);
        *ret = TAKE_PTR(f);
        return 0;
}

struct addr_floor *addr_floor_free(struct addr_floor *f) {
        if (f) {
                pthread_mutex_destroy(&f->lock);
                free(f->ranges);
                free(f);
        }
        return NULL;
}

size_t addr_floor_n_ranges(const struct addr_floor *f) {
        return f ? f->n_ranges : 0;
}

const struct addr_allow *addr_floor_range(const struct addr_floor *f, size_t i) {
        return f && i < f->n_ranges ? &f->ranges[i] : NULL;
}

/* Re-reads the interfaces' addresses when the last read is older than the
 * TTL; on failure keeps the previous list (lib/ does not log). Locked. */
static void node_addrs_refresh(struct addr_floor *f) {
        int64_t now = time_mono_us();
        if (f->node_read_us && now - f->node_read_us < NODE_ADDRS_TTL_US)
                return;
        struct ifaddrs *ifa = NULL;
        if (getifaddrs(&ifa) < 0)
                return;
        size_t n = 0;
        for (struct ifaddrs *i = ifa; i && n < NODE_ADDRS_MAX; i = i->ifa_next) {
                if (!i->ifa_addr)
                        continue;
                if (i->ifa_addr->sa_family == AF_INET) {
                        f->node[n] = (struct addr_allow){.family = AF_INET, .prefix_len = 32};
                        memcpy(f->node[n++].prefix, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, 4);
                } else if (i->ifa_addr->sa_family == AF_INET6) {
                        f->node[n] = (struct addr_allow){.family = AF_INET6, .prefix_len = 128};
                        memcpy(f->node[n++].prefix, &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, 16);
                }
        }
        freeifaddrs(ifa);
        f->n_node = n;
        f->node_read_us = now;
}

static void set_why(char *why, size_t size, const char *prefix, const char *what) {
        if (why && size)
                snprintf(why, size, "%s%s", prefix, what);
}

/* One address (family + bytes) against the fixed classes, the operator
 * ranges and the node's addresses (f->lock held when f). */
static bool floor_has(struct addr_floor *f, int family, const uint8_t *bytes, char *why, size_t size) {
        struct sockaddr_storage ss = {.ss_family = (sa_family_t)family};
        if (family == AF_INET)
                memcpy(&((struct sockaddr_in *)&ss)->sin_addr, bytes, 4);
        else
                memcpy(&((struct sockaddr_in6 *)&ss)->sin6_addr, bytes, 16);
        enum addr_class c = addr_classify(&ss);
        if (class_in_floor(c)) {
                set_why(why, size, "", addr_class_name(c));
                return true;
        }
        if (!f)
                return false;
        for (size_t i = 0; i < f->n_ranges; i++)
                if (prefix_contains(&f->ranges[i], family, bytes)) {
                        char t[INET6_ADDRSTRLEN + 8];
                        addr_allow_format(&f->ranges[i], t, sizeof t);
                        set_why(why, size, "operator range ", t);
                        return true;
                }
        for (size_t i = 0; i < f->n_node; i++)
                if (prefix_contains(&f->node[i], family, bytes)) {
                        set_why(why, size, "", "node address");
                        return true;
                }
        return false;
}

/* Every IPv4 address an IPv6 address may be delivered to by a translator or
 * tunnel on the path; returns how many were written to out. */
static size_t v6_embedded_v4s(const uint8_t b[16], uint32_t out[4]) {
        size_t n = 0;
        uint32_t e;
        if (v6_embedded_v4(b, &e))                  /* mapped, compatible, NAT64 /96, 6to4 */
                out[n++] = e;
        if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && b[4] == 0x00 && b[5] == 0x01) {
                out[n++] = be32(b + 12);            /* 64:ff9b:1::/48 with a /96 translator prefix */
                out[n++] = (uint32_t)b[6] << 24 | (uint32_t)b[7] << 16 | (uint32_t)b[9] << 8 | b[10]; /* RFC 6052 /48 */
        }
        if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x00 && b[3] == 0x00)
                out[n++] = ~be32(b + 12);           /* Teredo: the client's address, obfuscated */
        return n;
}

bool addr_floor_contains(struct addr_floor *f, const struct sockaddr_storage *a, char *why, size_t why_size) {
        if (!a || (a->ss_family != AF_INET && a->ss_family != AF_INET6)) {
                set_why(why, why_size, "", "not an IP address");
                return true;
        }
        if (f) {
                pthread_mutex_lock(&f->lock);
                node_addrs_refresh(f);
        }
        bool in;
        if (a->ss_family == AF_INET)
                in = floor_has(f, AF_INET, (const uint8_t *)&((const struct sockaddr_in *)a)->sin_addr, why, why_size);
        else {
                const uint8_t *b = ((const struct sockaddr_in6 *)a)->sin6_addr.s6_addr;
                in = floor_has(f, AF_INET6, b, why, why_size);
                uint32_t v4[4];
                size_t n = in ? 0 : v6_embedded_v4s(b, v4);
                for (size_t i = 0; i < n && !in; i++) {
                        uint32_t be = htonl(v4[i]);
                        in = floor_has(f, AF_INET, (const uint8_t *)&be, why, why_size);
                }
        }
        if (f)
                pthread_mutex_unlock(&f->lock);
        return in;
}

/* The IPv4 range an IPv6 rule inside an embedding prefix stands for. */
static bool v6_rule_as_v4(const struct addr_allow *r, struct addr_allow *ret) {
        static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};
        static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};
        static const uint8_t compat[12] = {0};
        if (r->family != AF_INET6)
                return false;
        if (r->prefix_len > 96 && (!memcmp(r->prefix, mapped, 12) || !memcmp(r->prefix, nat64, 12) ||
                                   !memcmp(r->prefix, compat, 12))) {
                *ret = (struct addr_allow){.family = AF_INET, .prefix_len = r->prefix_len - 96};
                memcpy(ret->prefix, r->prefix + 12, 4);
                return true;
        }
        if (r->prefix_len > 16 && r->prefix[0] == 0x20 && r->prefix[1] == 0x02) {
                unsigned l = r->prefix_len - 16;
                *ret = (struct addr_allow){.family = AF_INET, .prefix_len = l > 32 ? 32 : l};
                memcpy(ret->prefix, r->prefix + 2, 4);
                for (unsigned bit = ret->prefix_len; bit < 32; bit++)
                        ret->prefix[bit / 8] &= (uint8_t)~(0x80 >> (bit % 8));
                return true;
        }
        return false;
}

static bool floor_covers_one(struct addr_floor *f, const struct addr_allow *r, char *why, size_t size) {
        for (size_t i = 0; i < ELEMENTSOF(floor_ranges); i++) {
                struct addr_allow fr = must_parse(floor_ranges[i].cidr);
                if (range_within(r, &fr)) {
                        set_why(why, size, "", addr_class_name(floor_ranges[i].cls));
                        return true;
                }
        }
        if (!f)
                return false;
        for (size_t i = 0; i < f->n_ranges; i++)
                if (range_within(r, &f->ranges[i])) {
                        char t[INET6_ADDRSTRLEN + 8];
                        addr_allow_format(&f->ranges[i], t, sizeof t);
                        set_why(why, size, "operator range ", t);
                        return true;
                }
        for (size_t i = 0; i < f->n_node; i++)
                if (range_within(r, &f->node[i])) {
                        set_why(why, size, "", "node address");
                        return true;
                }
        return false;
}

bool addr_floor_covers(struct addr_floor *f, const struct addr_allow *r, char *why, size_t why_size) {
        if (!r)
                return false;
        if (f) {
                pthread_mutex_lock(&f->lock);
                node_addrs_refresh(f);
        }
        struct addr_allow v4;
        bool in = floor_covers_one(f, r, why, why_size) || (v6_rule_as_v4(r, &v4) && floor_covers_one(f, &v4, why, why_size));
        if (f)
                pthread_mutex_unlock(&f->lock);
        return in;
}

/* ---- local names ---- */

bool addr_name_is_local(const char *name, const char **ret_what) {
        /* RFC 6761 reserves localhost and every name under it for loopback;
         * the others are the cloud metadata services' well-known names */
        static const struct {
                const char *name;
                const char *what;
        } local[] = {
                {"localhost", "loopback"},
                {"localhost.localdomain", "loopback"},
                {"ip6-localhost", "loopback"},
                {"ip6-loopback", "loopback"},
                {"metadata.google.internal", "metadata"},
                {"metadata.goog", "metadata"},
                {"metadata", "metadata"},
                {"instance-data", "metadata"},
                {"instance-data.ec2.internal", "metadata"},
                {"metadata.azure.internal", "metadata"},
                {"metadata.tencentyun.com", "metadata"},
        };
        if (!name)
                return false;
        bool wildcard = name[0] == '*' && name[1] == '.';
        const char *base = wildcard ? name + 2 : name;
        size_t bl = strlen(base);
        if (bl && base[bl - 1] == '.')
                bl--;
        for (size_t i = 0; i < ELEMENTSOF(local); i++) {
                const char *l = local[i].name;
                size_t ll = strlen(l);
                /* the name itself, or under localhost; a wildcard also when a
                 * local name lies beneath its suffix ("*.google.internal") */
                bool hit = (bl == ll && !strncasecmp(base, l, ll)) ||
                           (i == 0 && bl > ll && base[bl - ll - 1] == '.' && !strncasecmp(base + bl - ll, l, ll)) ||
                           (wildcard && ll > bl && l[ll - bl - 1] == '.' && !strncasecmp(l + ll - bl, base, bl));
                if (hit) {
                        if (ret_what)
                                *ret_what = local[i].what;
                        return true;
                }
        }
        return false;
}
