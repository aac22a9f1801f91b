/* One lookup as an application makes it: getaddrinfo(NAME) with AF_UNSPEC
 * (A and AAAA), through the search list and ndots of /etc/resolv.conf. Built
 * against glibc (gcc) and against musl (musl-gcc) by search_path_e2e.sh.
 *   gai_client NAME
 * Prints one line, "ms=M addrs=A,B,..." (the distinct addresses, sorted) or
 * "ms=M error=TEXT"; exit status 0 when the name resolved, 1 otherwise. */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define MAX_ADDRS 64

static int compare(const void* a, const void* b) { return strcmp(a, b); }

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: gai_client NAME\n");
    return 2;
  }
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  struct addrinfo* res = NULL;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int rc = getaddrinfo(argv[1], NULL, &hints, &res);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
  if (rc != 0) {
    printf("ms=%.1f error=%s\n", ms, gai_strerror(rc));
    return 1;
  }
  static char addrs[MAX_ADDRS][INET6_ADDRSTRLEN];
  int n = 0;
  for (struct addrinfo* ai = res; ai != NULL && n < MAX_ADDRS; ai = ai->ai_next) {
    const void* raw = NULL;
    if (ai->ai_family == AF_INET) raw = &((struct sockaddr_in*)ai->ai_addr)->sin_addr;
    if (ai->ai_family == AF_INET6) raw = &((struct sockaddr_in6*)ai->ai_addr)->sin6_addr;
    if (raw == NULL || inet_ntop(ai->ai_family, raw, addrs[n], sizeof addrs[n]) == NULL) continue;
    int seen = 0;
    for (int i = 0; i < n; ++i) seen |= strcmp(addrs[i], addrs[n]) == 0;
    if (!seen) ++n;
  }
  freeaddrinfo(res);
  qsort(addrs, (size_t)n, sizeof addrs[0], compare);
  printf("ms=%.1f addrs=", ms);
  for (int i = 0; i < n; ++i) printf("%s%s", i ? "," : "", addrs[i]);
  printf("\n");
  return n > 0 ? 0 : 1;
}
