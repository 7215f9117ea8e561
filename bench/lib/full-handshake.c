/*
 * LD_PRELOAD shim for wrk (bench/lib/load.ts): wrk reuses one SSL object per connection
 * slot and SSL_clear() keeps its session, so every reconnect offers the last session and
 * a server that allows resumption (uWS: no switch for tickets) resumes about half of them.
 * The shim drops the session after SSL_clear() (TLSGATE_BENCH_FORCE_FULL=1) and counts
 * full and resumed handshakes, written at exit to TLSGATE_BENCH_TLS_STATS as
 * "full <n>\nresumed <n>\n". No OpenSSL headers: SSL and SSL_SESSION are opaque here.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;

extern int SSL_session_reused(const SSL *s);
extern int SSL_set_session(SSL *s, SSL_SESSION *session);

static unsigned long full_count, resumed_count;
static int force_full = -1;

static int forcing(void) {
  if (force_full < 0) {
    const char *v = getenv("TLSGATE_BENCH_FORCE_FULL");
    force_full = v && v[0] == '1';
  }
  return force_full;
}

int SSL_clear(SSL *s) {
  static int (*real)(SSL *);
  if (!real) real = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_clear");
  int r = real(s);
  if (r == 1 && forcing()) SSL_set_session(s, NULL);
  return r;
}

int SSL_connect(SSL *s) {
  static int (*real)(SSL *);
  if (!real) real = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_connect");
  int r = real(s);
  if (r == 1) {
    if (SSL_session_reused(s)) __atomic_fetch_add(&resumed_count, 1, __ATOMIC_RELAXED);
    else __atomic_fetch_add(&full_count, 1, __ATOMIC_RELAXED);
  }
  return r;
}

__attribute__((destructor)) static void report(void) {
  const char *file = getenv("TLSGATE_BENCH_TLS_STATS");
  if (!file) return;
  FILE *f = fopen(file, "w");
  if (!f) return;
  fprintf(f, "full %lu\nresumed %lu\n", __atomic_load_n(&full_count, __ATOMIC_RELAXED),
          __atomic_load_n(&resumed_count, __ATOMIC_RELAXED));
  fclose(f);
}
