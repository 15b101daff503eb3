/*
 * krun_standin.c -- TEST-ONLY libkrun STAND-IN.  NO VM.  NO ISOLATION.
 *
 *   !!!  THIS PROVIDES NO ISOLATION WHATSOEVER.  !!!
 *   Where libkrun would boot a guest kernel, this library runs the sandbox
 *   agent (`portal`, from the crate microsandbox-portal 0.2.6) as an ordinary
 *   process on the host, as the user that runs msbserver.  Any code or command
 *   sent to such a "sandbox" runs directly on the host.  Use it only for
 *   protocol / integration tests of clients of the server, never as a sandbox,
 *   and never install it where a real libkrun is expected.
 *
 * It lets the real microsandbox server 0.2.6 (msbserver + msbrun, from the
 * crate microsandbox-cli) and its real agent run on machines that cannot boot
 * microVMs, so that `cargo xtask test-integration` can test this project's
 * clients against them.  xtask compiles it with `cc` into a cache outside the
 * working tree (xtask/src/integration/cache.rs); docs/testing.md explains the
 * test layers.
 *
 * The file builds two libraries (xtask/src/integration/cache.rs):
 *
 *   libkrun.so            (default build)            exports every krun_*
 *       function that microsandbox-core 0.2.6 declares in lib/vm/ffi.rs, so that
 *       `cargo install microsandbox-cli` links, and so that `msbrun microvm`
 *       "boots" a sandbox.
 *
 *   libmsbw_loopback.so   (built with -DMSBW_LOOPBACK_SHIM)  an LD_PRELOAD shim
 *       injected into the portal only: portal 0.2.6 hard-codes 0.0.0.0 as its
 *       listen address; the shim rewrites a bind() to the IPv4 wildcard into a
 *       bind() to 127.0.0.1, so the unauthenticated code-execution agent is not
 *       reachable from other hosts.  msbserver talks to the agent via 127.0.0.1
 *       anyway.  Disable with MSBW_STANDIN_LOOPBACK=0.
 *
 * How msbrun uses libkrun (microsandbox-core 0.2.6, lib/vm/vm.rs):
 *   `msbrun supervisor ...` (spawned detached by msbserver) spawns
 *   `msbrun microvm --exec-path=... --native-rootfs=DIR --port-map=H:4444 ...`
 *   with stdin/stdout/stderr piped to the supervisor (stdout/stderr end up in
 *   NAMESPACE/.menv/log/<config-file>/<sandbox>.log).  The microvm process
 *   calls, in this order:
 *     krun_create_ctx, krun_set_log_level, krun_set_vm_config,
 *     krun_set_root | krun_set_overlayfs_root, krun_add_virtiofs (per volume),
 *     krun_set_port_map, krun_set_tsi_scope, krun_set_rlimits (if any),
 *     krun_set_workdir (if any), krun_set_exec, krun_set_console_output (if any),
 *     krun_start_enter.
 *   Every setter is checked with `assert!(status >= 0)`.  The microvm process's
 *   PID is recorded as the sandbox's microvm_pid (metrics read its CPU and RSS),
 *   and the sandbox counts as running until that process exits.
 *   `sandbox.stop` makes the server SIGTERM the supervisor, which SIGTERMs the
 *   microvm process.
 *
 * What krun_start_enter does here (real libkrun never returns on success: it
 * calls exit() with the guest's status when the VM shuts down; we do the same):
 *   1. host port H := the host side of the port-map entry whose guest side is
 *      4444 (the server always adds one: "H:4444").
 *   2. working directory := the native rootfs (the host directory that was the
 *      sandbox's `image`), or the top overlayfs layer; plus the workdir if that
 *      exists below it.
 *   3. fork; the child makes its own process group, waits
 *      MSBW_STANDIN_AGENT_DELAY_MS milliseconds (if set), then execs
 *      `PORTAL --port H` with stdin=/dev/null and the host environment
 *      overlaid with the sandbox's env (krun_set_exec envp).
 *   4. the parent ("the VM") waits for the child; on SIGTERM/SIGINT/SIGHUP it
 *      sends SIGTERM to the agent's process group (portal + python3 + node +
 *      commands), and SIGKILL after MSBW_STANDIN_KILL_GRACE_MS (default 3000).
 *      When the agent has exited, whatever is left of its group is SIGKILLed
 *      and the process exit()s with the agent's status (128+signal if killed).
 *   The guest exec (krun_set_exec's path/argv, e.g. the sandbox `shell`) is NOT
 *   run; it is only logged.  The VM lives exactly as long as the agent does.
 *
 * Environment variables (looked up first in the sandbox's own env, i.e. the
 * `envs` of sandbox.start's config, then in msbrun's environment, which it
 * inherits from msbserver):
 *   MSBW_STANDIN_PORTAL          path of the portal binary.  Default: the
 *                                compile-time MSBW_DEFAULT_PORTAL (xtask sets
 *                                it to the installed portal), else `portal` on
 *                                PATH.
 *   MSBW_STANDIN_AGENT_DELAY_MS  delay before the agent starts (ms, default 0).
 *   MSBW_STANDIN_KILL_GRACE_MS   SIGTERM->SIGKILL grace on stop (default 3000).
 *   MSBW_STANDIN_LOOPBACK        "0" = let the portal listen on 0.0.0.0.
 *   MSBW_STANDIN_LOOPBACK_LIB    path of libmsbw_loopback.so (default: next to
 *                                this libkrun.so).
 * The agent additionally gets MSBW_STANDIN=1, MSBW_STANDIN_ROOTFS=<rootfs>.
 *
 * Not emulated: volumes (virtiofs), user port maps, rlimits, vCPU/RAM limits,
 * networking scope, the guest exec.  Code runs with the host's filesystem and
 * the host's python3/node (the portal runs `python3` and `node` from PATH).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef MSBW_LOOPBACK_SHIM
/* ======================================================================== */
/*  libmsbw_loopback.so: LD_PRELOAD shim for the portal (test-only)          */
/* ======================================================================== */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* On load, undo our own LD_PRELOAD so that python3/node/commands spawned by
 * the portal do not inherit the shim. */
__attribute__((constructor)) static void msbw_loopback_init(void)
{
    const char *orig = getenv("MSBW_STANDIN_ORIG_LD_PRELOAD");
    if (orig && *orig)
        setenv("LD_PRELOAD", orig, 1);
    else
        unsetenv("LD_PRELOAD");
    unsetenv("MSBW_STANDIN_ORIG_LD_PRELOAD");
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    static int (*real_bind)(int, const struct sockaddr *, socklen_t);
    if (!real_bind)
        real_bind = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    if (addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        if (in->sin_addr.s_addr == htonl(INADDR_ANY)) {
            struct sockaddr_in lo = *in;
            lo.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return real_bind(fd, (const struct sockaddr *)&lo, sizeof lo);
        }
    }
    return real_bind(fd, addr, len);
}

#else /* !MSBW_LOOPBACK_SHIM */
/* ======================================================================== */
/*  libkrun.so stand-in                                                      */
/* ======================================================================== */

#define PORTAL_GUEST_PORT 4444
#define MAX_CTX 8

#ifndef MSBW_DEFAULT_PORTAL
#define MSBW_DEFAULT_PORTAL ""
#endif

/* Everything msbrun configures, kept so krun_start_enter can use/log it. */
struct ctx {
    bool used;
    uint32_t log_level;
    uint8_t vcpus;
    uint32_t ram_mib;
    char *root;          /* krun_set_root */
    char **overlay;      /* krun_set_overlayfs_root (NULL-terminated) */
    char **virtiofs;     /* "tag=path" entries (NULL-terminated) */
    char **port_map;     /* "host:guest" (NULL-terminated) */
    char **rlimits;
    char *workdir;
    char *exec_path;
    char **argv;
    char **envp;
    char *console_output;
};

static struct ctx g_ctx[MAX_CTX];

/* ---- small helpers ---------------------------------------------------- */

static void logf_(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "[krun-standin %d] ", (int)getpid());
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}

static struct ctx *get_ctx(uint32_t id)
{
    if (id >= MAX_CTX || !g_ctx[id].used)
        return NULL;
    return &g_ctx[id];
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static size_t vec_len(char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    return n;
}

static char **dup_vec(const char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    char **out = calloc(n + 1, sizeof(char *));
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++)
        out[i] = strdup(v[i]);
    return out;
}

static void free_vec(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* The setters' work: *slot becomes a copy of v (of s), what it held is freed. */
static int32_t replace_vec(char ***slot, const char *const *v)
{
    free_vec(*slot);
    *slot = dup_vec(v);
    return 0;
}

static int32_t replace_str(char **slot, const char *s)
{
    free(*slot);
    *slot = dup_or_null(s);
    return 0;
}

static char **vec_push(char **v, char *s)
{
    size_t n = vec_len(v);
    char **out = realloc(v, (n + 2) * sizeof(char *));
    if (!out)
        return v;
    out[n] = s;
    out[n + 1] = NULL;
    return out;
}

/* Look a variable up in the sandbox's env first, then in our environment. */
static const char *lookup(const struct ctx *c, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; c->envp && c->envp[i]; i++)
        if (strncmp(c->envp[i], name, nl) == 0 && c->envp[i][nl] == '=')
            return c->envp[i] + nl + 1;
    return getenv(name);
}

static long lookup_long(const struct ctx *c, const char *name, long dflt)
{
    const char *v = lookup(c, name);
    if (!v || !*v)
        return dflt;
    char *end;
    long r = strtol(v, &end, 10);
    return (*end == '\0' && r >= 0) ? r : dflt;
}

/* Build the agent's environment: ours, overridden by the sandbox's "K=V"s. */
static char **build_env(const struct ctx *c, const char *rootfs)
{
    extern char **environ;
    char **env = NULL;
    for (size_t i = 0; environ && environ[i]; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t kl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        bool overridden = false;
        for (size_t j = 0; c->envp && c->envp[j]; j++)
            if (strncmp(c->envp[j], environ[i], kl) == 0 && c->envp[j][kl] == '=')
                overridden = true;
        if (!overridden && strncmp(environ[i], "MSBW_STANDIN=", 13) != 0 &&
            strncmp(environ[i], "MSBW_STANDIN_ROOTFS=", 20) != 0)
            env = vec_push(env, strdup(environ[i]));
    }
    for (size_t j = 0; c->envp && c->envp[j]; j++)
        env = vec_push(env, strdup(c->envp[j]));
    env = vec_push(env, strdup("MSBW_STANDIN=1"));
    char *r;
    if (asprintf(&r, "MSBW_STANDIN_ROOTFS=%s", rootfs) >= 0)
        env = vec_push(env, r);
    return env;
}

static void env_set(char ***env, const char *name, const char *value)
{
    size_t nl = strlen(name);
    char *kv;
    if (asprintf(&kv, "%s=%s", name, value) < 0)
        return;
    for (size_t i = 0; *env && (*env)[i]; i++)
        if (strncmp((*env)[i], name, nl) == 0 && (*env)[i][nl] == '=') {
            free((*env)[i]);
            (*env)[i] = kv;
            return;
        }
    *env = vec_push(*env, kv);
}

static const char *env_get(char **env, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; env && env[i]; i++)
        if (strncmp(env[i], name, nl) == 0 && env[i][nl] == '=')
            return env[i] + nl + 1;
    return NULL;
}

/* Resolve a program name against PATH (done before fork: no malloc after). */
static char *resolve_exe(const char *name, const char *path_env)
{
    if (strchr(name, '/'))
        return access(name, X_OK) == 0 ? strdup(name) : NULL;
    if (!path_env)
        path_env = "/usr/local/bin:/usr/bin:/bin";
    char *paths = strdup(path_env), *save = NULL;
    for (char *d = strtok_r(paths, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        char *cand;
        if (asprintf(&cand, "%s/%s", *d ? d : ".", name) < 0)
            continue;
        if (access(cand, X_OK) == 0) {
            free(paths);
            return cand;
        }
        free(cand);
    }
    free(paths);
    return NULL;
}

/* Directory holding this libkrun.so (for the loopback shim). */
static char *own_dir(void)
{
    Dl_info info;
    if (!dladdr((void *)own_dir, &info) || !info.dli_fname)
        return NULL;
    char *p = realpath(info.dli_fname, NULL);
    if (!p)
        return NULL;
    char *slash = strrchr(p, '/');
    if (slash)
        *slash = '\0';
    return p;
}

/* ---- signal handling in the "VM" process ------------------------------ */

static volatile sig_atomic_t g_agent_pgid = 0;
static volatile sig_atomic_t g_grace_s = 3;

static void on_alarm(int sig)
{
    (void)sig;
    if (g_agent_pgid > 0)
        kill(-g_agent_pgid, SIGKILL);
}

static void on_term(int sig)
{
    (void)sig;
    if (g_agent_pgid > 0) {
        kill(-g_agent_pgid, SIGTERM);
        alarm(g_grace_s > 0 ? (unsigned)g_grace_s : 1);
    }
}

/* ---- the libkrun API (as declared by microsandbox-core 0.2.6) --------- */

int32_t krun_set_log_level(uint32_t level)
{
    for (int i = 0; i < MAX_CTX; i++)
        g_ctx[i].log_level = level;
    return 0;
}

int32_t krun_create_ctx(void)
{
    for (int i = 0; i < MAX_CTX; i++)
        if (!g_ctx[i].used) {
            memset(&g_ctx[i], 0, sizeof g_ctx[i]);
            g_ctx[i].used = true;
            g_ctx[i].vcpus = 1;
            g_ctx[i].ram_mib = 512;
            return i;
        }
    return -ENOMEM;
}

int32_t krun_free_ctx(uint32_t id)
{
    struct ctx *c = get_ctx(id);
    if (!c)
        return -EINVAL;
    free(c->root);
    free_vec(c->overlay);
    free_vec(c->virtiofs);
    free_vec(c->port_map);
    free_vec(c->rlimits);
    free(c->workdir);
    free(c->exec_path);
    free_vec(c->argv);
    free_vec(c->envp);
    free(c->console_output);
    memset(c, 0, sizeof *c);
    return 0;
}

int32_t krun_set_vm_config(uint32_t id, uint8_t num_vcpus, uint32_t ram_mib)
{
    struct ctx *c = get_ctx(id);
    if (!c || num_vcpus == 0 || ram_mib == 0)
        return -EINVAL;
    c->vcpus = num_vcpus;
    c->ram_mib = ram_mib;
    return 0;
}

int32_t krun_set_root(uint32_t id, const char *root_path)
{
    struct ctx *c = get_ctx(id);
    if (!c || !root_path)
        return -EINVAL;
    free(c->root);
    c->root = strdup(root_path);
    return 0;
}

int32_t krun_set_overlayfs_root(uint32_t id, const char *const *layers)
{
    struct ctx *c = get_ctx(id);
    if (!c || !layers || !layers[0])
        return -EINVAL;
    free_vec(c->overlay);
    c->overlay = dup_vec(layers);
    return 0;
}

int32_t krun_add_disk(uint32_t id, const char *block_id, const char *disk_path, bool read_only)
{
    (void)block_id; (void)disk_path; (void)read_only;
    return get_ctx(id) ? 0 : -EINVAL;
}

int32_t krun_add_virtiofs(uint32_t id, const char *tag, const char *path)
{
    struct ctx *c = get_ctx(id);
    if (!c || !tag || !path)
        return -EINVAL;
    char *kv;
    if (asprintf(&kv, "%s=%s", tag, path) < 0)
        return -ENOMEM;
    c->virtiofs = vec_push(c->virtiofs, kv);
    return 0;
}

int32_t krun_add_virtiofs2(uint32_t id, const char *tag, const char *path, uint64_t shm_size)
{
    (void)shm_size;
    return krun_add_virtiofs(id, tag, path);
}

int32_t krun_set_passt_fd(uint32_t id, int fd) { (void)fd; return get_ctx(id) ? 0 : -EINVAL; }
int32_t krun_set_gvproxy_path(uint32_t id, const char *p) { (void)p; return get_ctx(id) ? 0 : -EINVAL; }
int32_t krun_set_net_mac(uint32_t id, const uint8_t *mac) { (void)mac; return get_ctx(id) ? 0 : -EINVAL; }

int32_t krun_set_port_map(uint32_t id, const char *const *port_map)
{
    struct ctx *c = get_ctx(id);
    return c ? replace_vec(&c->port_map, port_map) : -EINVAL;
}

int32_t krun_set_tsi_scope(uint32_t id, const char *ip, const char *subnet, uint8_t scope)
{
    (void)ip; (void)subnet;
    if (!get_ctx(id) || scope > 3)
        return -EINVAL;
    return 0;
}

int32_t krun_set_gpu_options(uint32_t id, uint32_t flags) { (void)flags; return get_ctx(id) ? 0 : -EINVAL; }
int32_t krun_set_gpu_options2(uint32_t id, uint32_t flags, uint64_t shm)
{
    (void)flags; (void)shm;
    return get_ctx(id) ? 0 : -EINVAL;
}
int32_t krun_set_snd_device(uint32_t id, bool enable) { (void)enable; return get_ctx(id) ? 0 : -EINVAL; }

int32_t krun_set_rlimits(uint32_t id, const char *const *rlimits)
{
    struct ctx *c = get_ctx(id);
    return c ? replace_vec(&c->rlimits, rlimits) : -EINVAL;
}

int32_t krun_set_smbios_oem_strings(uint32_t id, const char *const *s) { (void)s; return get_ctx(id) ? 0 : -EINVAL; }

int32_t krun_set_workdir(uint32_t id, const char *workdir)
{
    struct ctx *c = get_ctx(id);
    return c ? replace_str(&c->workdir, workdir) : -EINVAL;
}

int32_t krun_set_exec(uint32_t id, const char *exec_path, const char *const *argv,
                      const char *const *envp)
{
    struct ctx *c = get_ctx(id);
    if (!c || !exec_path)
        return -EINVAL;
    free(c->exec_path);
    free_vec(c->argv);
    free_vec(c->envp);
    c->exec_path = strdup(exec_path);
    c->argv = dup_vec(argv);
    c->envp = dup_vec(envp);
    return 0;
}

int32_t krun_set_env(uint32_t id, const char *const *envp)
{
    struct ctx *c = get_ctx(id);
    return c ? replace_vec(&c->envp, envp) : -EINVAL;
}

int32_t krun_set_tee_config_file(uint32_t id, const char *p) { (void)p; return get_ctx(id) ? 0 : -EINVAL; }
int32_t krun_add_vsock_port(uint32_t id, uint32_t port, const char *p)
{
    (void)port; (void)p;
    return get_ctx(id) ? 0 : -EINVAL;
}

/* libkrun returns an eventfd only for TEE builds; we have none. */
int32_t krun_get_shutdown_eventfd(uint32_t id) { (void)id; return -EINVAL; }

int32_t krun_set_console_output(uint32_t id, const char *path)
{
    struct ctx *c = get_ctx(id);
    return c ? replace_str(&c->console_output, path) : -EINVAL;
}

/* "Boot" the VM: run the agent on the host (see the header comment). */
int32_t krun_start_enter(uint32_t id)
{
    struct ctx *c = get_ctx(id);
    if (!c)
        return -EINVAL;

    /* 1. the host port the server mapped to the agent's guest port 4444 */
    long host_port = -1;
    for (size_t i = 0; c->port_map && c->port_map[i]; i++) {
        const char *colon = strrchr(c->port_map[i], ':');
        if (colon && atol(colon + 1) == PORTAL_GUEST_PORT)
            host_port = atol(c->port_map[i]);
    }

    /* 2. the "guest" root and working directory */
    const char *rootfs = c->root;
    if (!rootfs && c->overlay)
        rootfs = c->overlay[vec_len(c->overlay) - 1]; /* top (rw) layer */
    if (!rootfs) {
        logf_("no rootfs configured");
        return -EINVAL;
    }
    char *cwd = strdup(rootfs);
    if (c->workdir && *c->workdir) {
        char *wd;
        struct stat st;
        if (asprintf(&wd, "%s/%s", rootfs, c->workdir[0] == '/' ? c->workdir + 1 : c->workdir) >= 0) {
            if (stat(wd, &st) == 0 && S_ISDIR(st.st_mode)) {
                free(cwd);
                cwd = wd;
            } else {
                free(wd);
            }
        }
    }

    logf_("TEST-ONLY libkrun stand-in: no VM, no isolation");
    logf_("vcpus=%u ram_mib=%u rootfs=%s%s workdir=%s cwd=%s", c->vcpus, c->ram_mib,
          c->root ? "native:" : "overlayfs-top:", rootfs, c->workdir ? c->workdir : "-", cwd);
    logf_("guest exec (not run): %s", c->exec_path ? c->exec_path : "-");
    for (size_t i = 0; c->argv && c->argv[i]; i++)
        logf_("  argv[%zu]=%s", i, c->argv[i]);
    for (size_t i = 0; c->envp && c->envp[i]; i++)
        logf_("  env %s", c->envp[i]);
    for (size_t i = 0; c->port_map && c->port_map[i]; i++)
        logf_("  port-map %s", c->port_map[i]);
    for (size_t i = 0; c->virtiofs && c->virtiofs[i]; i++)
        logf_("  virtiofs (ignored) %s", c->virtiofs[i]);

    /* 3. prepare everything the child needs before forking (msbrun is
     *    multi-threaded: only async-signal-safe calls after fork). */
    char **env = build_env(c, rootfs);
    char *portal = NULL;
    const char *portal_cfg = lookup(c, "MSBW_STANDIN_PORTAL");
    if (portal_cfg && *portal_cfg)
        portal = resolve_exe(portal_cfg, env_get(env, "PATH"));
    else if (*MSBW_DEFAULT_PORTAL && access(MSBW_DEFAULT_PORTAL, X_OK) == 0)
        portal = strdup(MSBW_DEFAULT_PORTAL);
    else
        portal = resolve_exe("portal", env_get(env, "PATH"));

    const char *lb = lookup(c, "MSBW_STANDIN_LOOPBACK");
    if (!(lb && strcmp(lb, "0") == 0)) {
        const char *lib = lookup(c, "MSBW_STANDIN_LOOPBACK_LIB");
        char *libpath = NULL;
        if (lib && *lib) {
            libpath = strdup(lib);
        } else {
            char *d = own_dir();
            if (d && asprintf(&libpath, "%s/libmsbw_loopback.so", d) < 0)
                libpath = NULL;
            free(d);
        }
        if (libpath && access(libpath, R_OK) == 0) {
            const char *orig = env_get(env, "LD_PRELOAD");
            if (orig && *orig) {
                char *o = strdup(orig), *both;
                env_set(&env, "MSBW_STANDIN_ORIG_LD_PRELOAD", o);
                if (asprintf(&both, "%s:%s", libpath, o) >= 0) {
                    env_set(&env, "LD_PRELOAD", both);
                    free(both);
                }
                free(o);
            } else {
                env_set(&env, "LD_PRELOAD", libpath);
            }
            logf_("agent listens on 127.0.0.1 only (loopback shim %s)", libpath);
        } else {
            logf_("loopback shim not found (%s); agent listens on 0.0.0.0",
                  libpath ? libpath : "?");
        }
        free(libpath);
    }

    long delay_ms = lookup_long(c, "MSBW_STANDIN_AGENT_DELAY_MS", 0);
    long grace_ms = lookup_long(c, "MSBW_STANDIN_KILL_GRACE_MS", 3000);
    g_grace_s = (sig_atomic_t)((grace_ms + 999) / 1000);

    char portbuf[16];
    snprintf(portbuf, sizeof portbuf, "%ld", host_port);
    char *agent_argv[] = {portal ? portal : "portal", "--port", portbuf, NULL};

    if (host_port <= 0) {
        logf_("no port map for guest port %d: nothing to run; idling until terminated",
              PORTAL_GUEST_PORT);
    } else if (!portal) {
        logf_("portal binary not found (MSBW_STANDIN_PORTAL=%s, default %s, or `portal` on PATH)",
              portal_cfg ? portal_cfg : "(unset)",
              *MSBW_DEFAULT_PORTAL ? MSBW_DEFAULT_PORTAL : "(none)");
        return -ENOENT;
    } else {
        logf_("agent: %s --port %s (delay %ld ms)", portal, portbuf, delay_ms);
    }

    int console_fd = -1;
    if (c->console_output && *c->console_output)
        console_fd = open(c->console_output, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

    /* Install the stop handlers before forking so no SIGTERM is lost. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);

    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pid_t pid = fork();
    if (pid < 0) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        logf_("fork failed: %s", strerror(errno));
        return -errno;
    }
    if (pid == 0) {
        /* ---- child: becomes the agent ---- */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigaction(SIGTERM, &dfl, NULL);
        sigaction(SIGINT, &dfl, NULL);
        sigaction(SIGHUP, &dfl, NULL);
        sigaction(SIGALRM, &dfl, NULL);
        sigaction(SIGPIPE, &dfl, NULL);
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (getppid() == 1)
            _exit(127); /* the VM process already died */
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) {
            dup2(devnull, 0);
            if (devnull > 2)
                close(devnull);
        }
        if (console_fd >= 0) {
            dup2(console_fd, 1);
            dup2(console_fd, 2);
        }
        if (chdir(cwd) != 0) {
            static const char m[] = "[krun-standin] chdir to rootfs failed\n";
            ssize_t w = write(2, m, sizeof m - 1);
            (void)w;
            _exit(126);
        }
        if (delay_ms > 0) {
            struct timespec ts = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
            while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
                ;
        }
        if (host_port <= 0) {
            for (;;)
                pause();
        }
        execve(agent_argv[0], agent_argv, env);
        static const char m[] = "[krun-standin] exec of the portal failed\n";
        ssize_t w = write(2, m, sizeof m - 1);
        (void)w;
        _exit(127);
    }

    /* ---- parent: "the VM" ---- */
    setpgid(pid, pid); /* also done in the child; whichever runs first wins */
    g_agent_pgid = pid;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (console_fd >= 0)
        close(console_fd);

    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, 0);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR) {
            status = 0;
            break;
        }
    }
    /* The agent is gone: clean up what is left of its group (python3, node,
     * running commands), like a VM shutdown would. */
    kill(-pid, SIGKILL);
    alarm(0);

    int code = WIFEXITED(status) ? WEXITSTATUS(status)
               : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
    logf_("agent exited (status %d); VM exits", code);
    /* Like libkrun: never return on success; exit with the guest's status. */
    exit(code);
}

#endif /* MSBW_LOOPBACK_SHIM */
