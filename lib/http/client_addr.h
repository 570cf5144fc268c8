/* The address of an HTTP client behind zero or more reverse proxies: the
 * socket peer, unless that peer is a trusted proxy, in which case the
 * rightmost X-Forwarded-For hop that is not itself a trusted proxy. A client
 * can write anything into X-Forwarded-For, so only hops appended by proxies
 * the operator trusts (PADDOCK_TRUSTED_PROXIES) are believed: the hop to the
 * left of the last trusted one is as far as the chain can be followed. */
#pragma once
#include <stddef.h>

#include "core/err.h"
#include "net/addr_policy.h"

/* The largest list http_trusted_proxies_parse() accepts. */
#define HTTP_TRUSTED_PROXIES_MAX 64
/* Room for any address http_client_addr() writes (an IPv6 text form). */
#define HTTP_CLIENT_ADDR_MAX 64

/* Parses list, comma-separated CIDRs or addresses ("10.0.0.0/8, ::1"; spaces
 * around items ignored; "" is the empty list) into ret[0..*ret_n) (at most
 * max). Returns 0, or -EINVAL with reterr naming the item that is not an
 * address or CIDR (addr_allow_parse: canonical, no host bits, no /0), or
 * -E2BIG past max. list is borrowed. */
int http_trusted_proxies_parse(const char *list, struct addr_allow *ret, size_t max, size_t *ret_n,
                               struct err_detail *reterr);

/* True when the address text addr (IPv4, IPv6, or IPv4-mapped IPv6) lies in
 * one of trusted[0..n). Unparseable text is never trusted. */
bool http_addr_trusted(const char *addr, const struct addr_allow *trusted, size_t n);

/* Writes the client's address into out (size bytes, at least
 * HTTP_CLIENT_ADDR_MAX): peer (the socket's, "" when unknown) when it is not
 * trusted; else, walking xff (the X-Forwarded-For value, may be NULL) from the
 * right, the first hop that is not trusted; a hop that is not an address
 * stops the walk at the last address seen (the proxy that appended it). An
 * IPv4-mapped IPv6 address is written as IPv4, so one client has one key.
 * Strings borrowed; never fails. */
void http_client_addr(const char *peer, const char *xff, const struct addr_allow *trusted, size_t n, char *out,
                      size_t size);
