/*
 * A fake libnvidia-ml.so.1 for tests: the real pynvml loads it and gets the
 * values (and the errors) a test chose, without a GPU or a driver.
 *
 * Compiled by the test session against NVIDIA's own nvml.h (PyPI package
 * nvidia-nvml-dev), so gcc checks every prototype implemented here.
 *
 * Driven by the file named in $AIOS_FAKE_NVML_CONFIG: one `key=value` per
 * line (written by tests/fakenvml/__init__.py, which documents the keys).
 * The file is re-read when its inode, size or mtime changes, so a test can
 * lose a GPU or inject an XID while a process runs. Writers replace the file
 * atomically (rename), so a reader never sees half a file.
 *
 * Every entry point takes one mutex: pynvml releases the GIL around ctypes
 * calls, so an event waiter thread and a sampling thread call in together.
 */
#define NVML_NO_UNVERSIONED_FUNC_DEFS 1
#include <nvml.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_GPUS 16
#define MAX_MIG 8
#define MAX_LINKS 18
#define MAX_EVENTS 512
#define MAX_SETS 32
#define MAX_PROCS 128
#define STR_LEN 96

/* Fields a test can declare unsupported; each maps to one or more calls. */
enum field_bit {
    F_MEMORY = 1 << 0,
    F_UTILIZATION = 1 << 1,
    F_TEMPERATURE = 1 << 2,
    F_POWER_DRAW = 1 << 3,
    F_POWER_LIMIT = 1 << 4,
    F_CLOCK_SM = 1 << 5,
    F_CLOCK_MEM = 1 << 6,
    F_CLOCK_EVENTS = 1 << 7,
    F_ECC = 1 << 8,
    F_RETIRED_PAGES = 1 << 9,
    F_REMAPPED_ROWS = 1 << 10,
    F_PCIE_REPLAY = 1 << 11,
    F_NVLINK = 1 << 12,
    F_PROCESSES = 1 << 13,
    F_MIG = 1 << 14,
    F_CC = 1 << 15,
    F_PCI = 1 << 16,
    F_MEMORY_V2 = 1 << 17,
    F_EVENTS = 1 << 18,
    F_RECOVERY_ACTION = 1 << 19,
    F_GRAPHICS = 1 << 20,
    F_PROCESS_UTIL = 1 << 21,
};

static const struct {
    const char *name;
    unsigned bit;
} FIELD_NAMES[] = {
    {"memory", F_MEMORY},
    {"utilization", F_UTILIZATION},
    {"temperature", F_TEMPERATURE},
    {"power_draw", F_POWER_DRAW},
    {"power_limit", F_POWER_LIMIT},
    {"clock_sm", F_CLOCK_SM},
    {"clock_mem", F_CLOCK_MEM},
    {"clock_event_reasons", F_CLOCK_EVENTS},
    {"ecc", F_ECC},
    {"retired_pages", F_RETIRED_PAGES},
    {"remapped_rows", F_REMAPPED_ROWS},
    {"pcie_replay", F_PCIE_REPLAY},
    {"nvlink", F_NVLINK},
    {"compute_processes", F_PROCESSES},
    {"mig", F_MIG},
    {"compute_capability", F_CC},
    {"pci", F_PCI},
    {"memory_v2", F_MEMORY_V2},
    {"events", F_EVENTS},
    {"recovery_action", F_RECOVERY_ACTION},
    {"graphics_processes", F_GRAPHICS},
    {"process_utilization", F_PROCESS_UTIL},
};

struct mig_spec {
    char uuid[STR_LEN];
    char name[STR_LEN];
    unsigned long long memory_total, memory_used;
    unsigned gi;       /* GPU instance id; 0 = index + 1 */
    int util_gpu;      /* -1 (the default) = not supported, as on real MIG devices */
};

/* A process on a GPU: kind "c" compute, "g" graphics, "cg" both. */
struct proc_spec {
    unsigned pid;
    unsigned kind;     /* bit 0 compute, bit 1 graphics */
    unsigned long long used_memory; /* ~0ULL = NVML_VALUE_NOT_AVAILABLE */
    unsigned gi;       /* GPU instance id, 0xFFFFFFFF without MIG */
    int sm, mem;       /* utilization %, -1 = no sample */
};

struct gpu_spec {
    char name[STR_LEN];
    char uuid[STR_LEN];
    char pci_bus_id[32];
    unsigned long long memory_total, memory_used, memory_free, memory_reserved;
    int cc_major, cc_minor;
    unsigned mig_current, mig_pending;
    int mig_count;
    struct mig_spec mig[MAX_MIG];
    unsigned power_limit_mw, power_draw_mw;
    unsigned temperature, util_gpu, util_memory, clock_sm, clock_mem;
    unsigned long long clock_event_reasons;
    unsigned long long ecc[2][2]; /* [error type][counter type] */
    unsigned retired_sbe, retired_dbe, retired_pending;
    unsigned remap_corr, remap_unc, remap_pending, remap_failure;
    unsigned pcie_replay;
    int nvlink_count;
    unsigned nvlink[MAX_LINKS];
    unsigned compute_processes; /* synthetic compute processes when no proc.K is given */
    int proc_count;
    struct proc_spec procs[MAX_PROCS];
    unsigned util_jitter; /* benchmarks: per-process utilization moves by 0..2 % per query */
    unsigned unsupported; /* field_bit mask */
    nvmlReturn_t error;   /* every call on the device returns this when set */
    unsigned recovery_action;
    char hang[STR_LEN];   /* the NVML function that blocks on this device until the key is removed */
};

struct event_spec {
    long seq;
    int gpu;
    unsigned long long xid;
};

struct config {
    nvmlReturn_t init_error;
    char driver_version[STR_LEN];
    int cuda_driver_version;
    int gpu_count;
    struct gpu_spec gpu[MAX_GPUS];
    int event_count;
    struct event_spec events[MAX_EVENTS];
};

/* Handles are stable addresses into these arrays; the header leaves the
 * structs opaque, so the fake defines them. */
struct nvmlDevice_st {
    int gpu;
    int mig; /* -1 for a whole GPU */
};

struct nvmlEventSet_st {
    int in_use;
    unsigned long long mask[MAX_GPUS];
    long last_seq;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct config cfg;
static int init_count;
static struct stat loaded_stat;
static int loaded_once;
static struct nvmlDevice_st gpu_handles[MAX_GPUS];
static struct nvmlDevice_st mig_handles[MAX_GPUS][MAX_MIG];
static struct nvmlEventSet_st event_sets[MAX_SETS];

static const struct {
    const char *name;
    nvmlReturn_t code;
} ERROR_NAMES[] = {
    {"SUCCESS", NVML_SUCCESS},
    {"UNINITIALIZED", NVML_ERROR_UNINITIALIZED},
    {"INVALID_ARGUMENT", NVML_ERROR_INVALID_ARGUMENT},
    {"NOT_SUPPORTED", NVML_ERROR_NOT_SUPPORTED},
    {"NO_PERMISSION", NVML_ERROR_NO_PERMISSION},
    {"NOT_FOUND", NVML_ERROR_NOT_FOUND},
    {"INSUFFICIENT_SIZE", NVML_ERROR_INSUFFICIENT_SIZE},
    {"INSUFFICIENT_POWER", NVML_ERROR_INSUFFICIENT_POWER},
    {"DRIVER_NOT_LOADED", NVML_ERROR_DRIVER_NOT_LOADED},
    {"TIMEOUT", NVML_ERROR_TIMEOUT},
    {"IRQ_ISSUE", NVML_ERROR_IRQ_ISSUE},
    {"LIBRARY_NOT_FOUND", NVML_ERROR_LIBRARY_NOT_FOUND},
    {"FUNCTION_NOT_FOUND", NVML_ERROR_FUNCTION_NOT_FOUND},
    {"CORRUPTED_INFOROM", NVML_ERROR_CORRUPTED_INFOROM},
    {"GPU_IS_LOST", NVML_ERROR_GPU_IS_LOST},
    {"RESET_REQUIRED", NVML_ERROR_RESET_REQUIRED},
    {"OPERATING_SYSTEM", NVML_ERROR_OPERATING_SYSTEM},
    {"LIB_RM_VERSION_MISMATCH", NVML_ERROR_LIB_RM_VERSION_MISMATCH},
    {"MEMORY", NVML_ERROR_MEMORY},
    {"UNKNOWN", NVML_ERROR_UNKNOWN},
};

static nvmlReturn_t parse_error(const char *value)
{
    for (size_t i = 0; i < sizeof ERROR_NAMES / sizeof ERROR_NAMES[0]; i++)
        if (strcmp(ERROR_NAMES[i].name, value) == 0)
            return ERROR_NAMES[i].code;
    return (nvmlReturn_t)strtol(value, NULL, 0);
}

static unsigned parse_fields(const char *value)
{
    unsigned mask = 0;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", value);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        for (size_t i = 0; i < sizeof FIELD_NAMES / sizeof FIELD_NAMES[0]; i++)
            if (strcmp(FIELD_NAMES[i].name, tok) == 0)
                mask |= FIELD_NAMES[i].bit;
    return mask;
}

static void copy_str(char *dst, size_t size, const char *src) { snprintf(dst, size, "%s", src); }

static unsigned long long num(const char *value) { return strtoull(value, NULL, 0); }

static void set_mig_key(struct gpu_spec *g, int m, const char *key, const char *value)
{
    if (m < 0 || m >= MAX_MIG)
        return;
    if (m + 1 > g->mig_count) {
        for (int k = g->mig_count; k <= m; k++)
            g->mig[k].util_gpu = -1;
        g->mig_count = m + 1;
    }
    struct mig_spec *s = &g->mig[m];
    if (!strcmp(key, "uuid")) copy_str(s->uuid, sizeof s->uuid, value);
    else if (!strcmp(key, "name")) copy_str(s->name, sizeof s->name, value);
    else if (!strcmp(key, "memory_total")) s->memory_total = num(value);
    else if (!strcmp(key, "memory_used")) s->memory_used = num(value);
    else if (!strcmp(key, "gi")) s->gi = (unsigned)num(value);
    else if (!strcmp(key, "util_gpu")) s->util_gpu = (int)strtol(value, NULL, 10);
}

static void set_proc_key(struct gpu_spec *g, int k, const char *key, const char *value)
{
    if (k < 0 || k >= MAX_PROCS)
        return;
    if (k + 1 > g->proc_count) {
        for (int i = g->proc_count; i <= k; i++) {
            memset(&g->procs[i], 0, sizeof g->procs[i]);
            g->procs[i].kind = 1;
            g->procs[i].gi = 0xFFFFFFFFu;
            g->procs[i].sm = g->procs[i].mem = -1;
        }
        g->proc_count = k + 1;
    }
    struct proc_spec *p = &g->procs[k];
    if (!strcmp(key, "pid")) p->pid = (unsigned)num(value);
    else if (!strcmp(key, "kind")) p->kind = (strchr(value, 'c') ? 1u : 0u) | (strchr(value, 'g') ? 2u : 0u);
    else if (!strcmp(key, "used_memory")) p->used_memory = !strcmp(value, "na") ? ~0ULL : num(value);
    else if (!strcmp(key, "gi")) p->gi = (unsigned)num(value);
    else if (!strcmp(key, "sm")) p->sm = (int)strtol(value, NULL, 10);
    else if (!strcmp(key, "mem")) p->mem = (int)strtol(value, NULL, 10);
}

static void set_gpu_key(struct gpu_spec *g, const char *key, const char *value)
{
    if (!strncmp(key, "mig.", 4)) {
        char *rest;
        long m = strtol(key + 4, &rest, 10);
        if (*rest == '.')
            set_mig_key(g, (int)m, rest + 1, value);
        return;
    }
    if (!strncmp(key, "proc.", 5)) {
        char *rest;
        long k = strtol(key + 5, &rest, 10);
        if (*rest == '.')
            set_proc_key(g, (int)k, rest + 1, value);
        return;
    }
    if (!strcmp(key, "name")) copy_str(g->name, sizeof g->name, value);
    else if (!strcmp(key, "uuid")) copy_str(g->uuid, sizeof g->uuid, value);
    else if (!strcmp(key, "pci_bus_id")) copy_str(g->pci_bus_id, sizeof g->pci_bus_id, value);
    else if (!strcmp(key, "memory_total")) g->memory_total = num(value);
    else if (!strcmp(key, "memory_used")) g->memory_used = num(value);
    else if (!strcmp(key, "memory_free")) g->memory_free = num(value);
    else if (!strcmp(key, "memory_reserved")) g->memory_reserved = num(value);
    else if (!strcmp(key, "cc_major")) g->cc_major = (int)num(value);
    else if (!strcmp(key, "cc_minor")) g->cc_minor = (int)num(value);
    else if (!strcmp(key, "mig_current")) g->mig_current = (unsigned)num(value);
    else if (!strcmp(key, "mig_pending")) g->mig_pending = (unsigned)num(value);
    else if (!strcmp(key, "power_limit_mw")) g->power_limit_mw = (unsigned)num(value);
    else if (!strcmp(key, "power_draw_mw")) g->power_draw_mw = (unsigned)num(value);
    else if (!strcmp(key, "temperature")) g->temperature = (unsigned)num(value);
    else if (!strcmp(key, "util_gpu")) g->util_gpu = (unsigned)num(value);
    else if (!strcmp(key, "util_memory")) g->util_memory = (unsigned)num(value);
    else if (!strcmp(key, "clock_sm")) g->clock_sm = (unsigned)num(value);
    else if (!strcmp(key, "clock_mem")) g->clock_mem = (unsigned)num(value);
    else if (!strcmp(key, "clock_event_reasons")) g->clock_event_reasons = num(value);
    else if (!strcmp(key, "ecc_corrected_volatile")) g->ecc[0][0] = num(value);
    else if (!strcmp(key, "ecc_corrected_aggregate")) g->ecc[0][1] = num(value);
    else if (!strcmp(key, "ecc_uncorrected_volatile")) g->ecc[1][0] = num(value);
    else if (!strcmp(key, "ecc_uncorrected_aggregate")) g->ecc[1][1] = num(value);
    else if (!strcmp(key, "retired_sbe")) g->retired_sbe = (unsigned)num(value);
    else if (!strcmp(key, "retired_dbe")) g->retired_dbe = (unsigned)num(value);
    else if (!strcmp(key, "retired_pending")) g->retired_pending = (unsigned)num(value);
    else if (!strcmp(key, "remap_corr")) g->remap_corr = (unsigned)num(value);
    else if (!strcmp(key, "remap_unc")) g->remap_unc = (unsigned)num(value);
    else if (!strcmp(key, "remap_pending")) g->remap_pending = (unsigned)num(value);
    else if (!strcmp(key, "remap_failure")) g->remap_failure = (unsigned)num(value);
    else if (!strcmp(key, "pcie_replay")) g->pcie_replay = (unsigned)num(value);
    else if (!strcmp(key, "compute_processes")) g->compute_processes = (unsigned)num(value);
    else if (!strcmp(key, "util_jitter")) g->util_jitter = (unsigned)num(value);
    else if (!strcmp(key, "unsupported")) g->unsupported = parse_fields(value);
    else if (!strcmp(key, "error")) g->error = parse_error(value);
    else if (!strcmp(key, "recovery_action")) g->recovery_action = (unsigned)num(value);
    else if (!strcmp(key, "hang")) copy_str(g->hang, sizeof g->hang, value);
    else if (!strcmp(key, "nvlink")) {
        /* comma-separated 0/1 per link; links past the list do not exist */
        g->nvlink_count = 0;
        for (const char *p = value; *p && g->nvlink_count < MAX_LINKS; p++)
            if (*p == '0' || *p == '1')
                g->nvlink[g->nvlink_count++] = (unsigned)(*p - '0');
    }
}

static void set_key(struct config *c, char *key, char *value)
{
    if (!strcmp(key, "init_error")) c->init_error = parse_error(value);
    else if (!strcmp(key, "driver_version")) copy_str(c->driver_version, sizeof c->driver_version, value);
    else if (!strcmp(key, "cuda_driver_version")) c->cuda_driver_version = (int)num(value);
    else if (!strcmp(key, "gpu_count")) {
        long n = strtol(value, NULL, 10);
        c->gpu_count = n < 0 ? 0 : (n > MAX_GPUS ? MAX_GPUS : (int)n);
    } else if (!strncmp(key, "gpu.", 4)) {
        char *rest;
        long i = strtol(key + 4, &rest, 10);
        if (*rest == '.' && i >= 0 && i < MAX_GPUS)
            set_gpu_key(&c->gpu[i], rest + 1, value);
    } else if (!strncmp(key, "event.", 6) && c->event_count < MAX_EVENTS) {
        /* event.<seq>=<gpu index>,<xid> */
        struct event_spec *e = &c->events[c->event_count];
        char *comma;
        e->seq = strtol(key + 6, NULL, 10);
        e->gpu = (int)strtol(value, &comma, 10);
        e->xid = *comma == ',' ? num(comma + 1) : 0;
        c->event_count++;
    }
}

/* Read the config file into cfg. Called with the lock held. */
static void read_config(const char *path, const struct stat *st)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    static struct config next;
    memset(&next, 0, sizeof next);
    char line[2048];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        char *eq = strchr(line, '=');
        if (line[0] == '#' || !eq)
            continue;
        *eq = 0;
        set_key(&next, line, eq + 1);
    }
    fclose(f);
    cfg = next;
    if (st)
        loaded_stat = *st;
    loaded_once = 1;
}

/* The writer bumps a counter in "<config>.gen" after each rewrite; mapping it
 * lets every call notice a change with one memory read instead of a stat()
 * (which costs microseconds under some sandboxes and would dwarf the cost of
 * the code under test). Without that file, fall back to stat() per call. */
static const volatile unsigned long long *generation;
static unsigned long long loaded_generation;
static int generation_tried;

static void map_generation(const char *path)
{
    generation_tried = 1;
    char gen_path[4096];
    snprintf(gen_path, sizeof gen_path, "%s.gen", path);
    int fd = open(gen_path, O_RDONLY);
    if (fd < 0)
        return;
    void *map = mmap(NULL, sizeof(unsigned long long), PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map != MAP_FAILED)
        generation = map;
}

/* Re-read the config when it changed. Called with the lock held. */
static void reload(void)
{
    const char *path = getenv("AIOS_FAKE_NVML_CONFIG");
    if (path && !generation_tried)
        map_generation(path);
    if (path && generation) {
        unsigned long long now = __atomic_load_n(generation, __ATOMIC_ACQUIRE);
        if (loaded_once && now == loaded_generation)
            return;
        loaded_generation = now;
        read_config(path, NULL);
        return;
    }
    struct stat st;
    if (!path || stat(path, &st) != 0) {
        if (!loaded_once) {
            memset(&cfg, 0, sizeof cfg);
            cfg.init_error = NVML_ERROR_DRIVER_NOT_LOADED;
            loaded_once = 1;
        }
        return;
    }
    if (loaded_once && st.st_ino == loaded_stat.st_ino && st.st_size == loaded_stat.st_size &&
        st.st_mtim.tv_sec == loaded_stat.st_mtim.tv_sec && st.st_mtim.tv_nsec == loaded_stat.st_mtim.tv_nsec)
        return;
    read_config(path, &st);
}

static long max_event_seq(void)
{
    long m = 0;
    for (int i = 0; i < cfg.event_count; i++)
        if (cfg.events[i].seq > m)
            m = cfg.events[i].seq;
    return m;
}

/* Lock, reload, and check that NVML is initialized. */
#define ENTER()                         \
    pthread_mutex_lock(&lock);          \
    reload();                           \
    if (init_count == 0) {              \
        pthread_mutex_unlock(&lock);    \
        return NVML_ERROR_UNINITIALIZED; \
    }
#define RETURN(code)                 \
    do {                             \
        nvmlReturn_t r_ = (code);    \
        pthread_mutex_unlock(&lock); \
        return r_;                   \
    } while (0)

/* Resolve a handle to its GPU spec; the device-wide error wins. */
static nvmlReturn_t device_of(nvmlDevice_t device, struct gpu_spec **out)
{
    if (!device)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (device->gpu < 0 || device->gpu >= cfg.gpu_count)
        return NVML_ERROR_GPU_IS_LOST; /* the GPU went away from the config */
    struct gpu_spec *g = &cfg.gpu[device->gpu];
    if (g->error != NVML_SUCCESS)
        return g->error;
    *out = g;
    return NVML_SUCCESS;
}

/* A call named in gpu.I.hang blocks, like a driver stuck in the kernel, until
 * the key is removed from the config. It lets go of the lock meanwhile, so the
 * other GPUs (and other calls on this one) still answer. Lock held on entry
 * and on return. */
static void hang_while_named(nvmlDevice_t device, const char *function)
{
    while (device->gpu >= 0 && device->gpu < cfg.gpu_count && strcmp(cfg.gpu[device->gpu].hang, function) == 0) {
        pthread_mutex_unlock(&lock);
        struct timespec nap = {0, 10 * 1000 * 1000};
        nanosleep(&nap, NULL);
        pthread_mutex_lock(&lock);
        reload();
    }
}

#define DEVICE(device, g, field)                                 \
    struct gpu_spec *g = NULL;                                   \
    {                                                            \
        if (device)                                              \
            hang_while_named(device, __func__);                  \
        nvmlReturn_t e_ = device_of(device, &g);                 \
        if (e_ != NVML_SUCCESS)                                  \
            RETURN(e_);                                          \
        if ((field) && (g->unsupported & (unsigned)(field)))     \
            RETURN(NVML_ERROR_NOT_SUPPORTED);                    \
    }

#define NEED(ptr)                                  \
    if (!(ptr))                                    \
        RETURN(NVML_ERROR_INVALID_ARGUMENT);

/* ------------------------------------------------------------ lifecycle */

nvmlReturn_t nvmlInitWithFlags(unsigned int flags)
{
    (void)flags;
    pthread_mutex_lock(&lock);
    reload();
    if (cfg.init_error != NVML_SUCCESS)
        RETURN(cfg.init_error);
    for (int i = 0; i < MAX_GPUS; i++) {
        gpu_handles[i].gpu = i;
        gpu_handles[i].mig = -1;
        for (int m = 0; m < MAX_MIG; m++) {
            mig_handles[i][m].gpu = i;
            mig_handles[i][m].mig = m;
        }
    }
    init_count++;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
nvmlReturn_t nvmlInit(void) { return nvmlInitWithFlags(0); }

nvmlReturn_t nvmlShutdown(void)
{
    ENTER();
    init_count--;
    RETURN(NVML_SUCCESS);
}

const char *nvmlErrorString(nvmlReturn_t result)
{
    for (size_t i = 0; i < sizeof ERROR_NAMES / sizeof ERROR_NAMES[0]; i++)
        if (ERROR_NAMES[i].code == result)
            return ERROR_NAMES[i].name;
    return "UNKNOWN_ERROR_CODE";
}

/* --------------------------------------------------------------- system */

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
    ENTER();
    NEED(version);
    if (strlen(cfg.driver_version) + 1 > length)
        RETURN(NVML_ERROR_INSUFFICIENT_SIZE);
    strcpy(version, cfg.driver_version);
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *cudaDriverVersion)
{
    ENTER();
    NEED(cudaDriverVersion);
    *cudaDriverVersion = cfg.cuda_driver_version;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *cudaDriverVersion)
{
    return nvmlSystemGetCudaDriverVersion(cudaDriverVersion);
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *deviceCount)
{
    ENTER();
    NEED(deviceCount);
    *deviceCount = (unsigned)cfg.gpu_count;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetCount(unsigned int *deviceCount) { return nvmlDeviceGetCount_v2(deviceCount); }

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
    ENTER();
    NEED(device);
    if (index >= (unsigned)cfg.gpu_count)
        RETURN(NVML_ERROR_INVALID_ARGUMENT);
    if (cfg.gpu[index].error != NVML_SUCCESS)
        RETURN(cfg.gpu[index].error);
    *device = &gpu_handles[index];
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device)
{
    return nvmlDeviceGetHandleByIndex_v2(index, device);
}

/* ------------------------------------------------------------ identity */

nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index)
{
    ENTER();
    DEVICE(device, g, 0);
    NEED(index);
    *index = (unsigned)device->gpu;
    RETURN(NVML_SUCCESS);
}

static nvmlReturn_t put_str(char *dst, unsigned int length, const char *src)
{
    if (!dst)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(src) + 1 > length)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(dst, src);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length)
{
    ENTER();
    DEVICE(device, g, 0);
    if (device->mig >= 0)
        RETURN(put_str(name, length, g->mig[device->mig].name));
    RETURN(put_str(name, length, g->name));
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length)
{
    ENTER();
    DEVICE(device, g, 0);
    if (device->mig >= 0)
        RETURN(put_str(uuid, length, g->mig[device->mig].uuid));
    RETURN(put_str(uuid, length, g->uuid));
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci)
{
    ENTER();
    DEVICE(device, g, F_PCI);
    NEED(pci);
    memset(pci, 0, sizeof *pci);
    unsigned domain = 0, bus = 0, dev = 0;
    sscanf(g->pci_bus_id, "%x:%x:%x", &domain, &bus, &dev);
    pci->domain = domain;
    pci->bus = bus;
    pci->device = dev;
    pci->pciDeviceId = 0x20B510DE;
    snprintf(pci->busId, sizeof pci->busId, "%s", g->pci_bus_id);
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, NVML_DEVICE_PCI_BUS_ID_LEGACY_FMT, domain, bus, dev);
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t device, int *major, int *minor)
{
    ENTER();
    DEVICE(device, g, F_CC);
    NEED(major && minor);
    *major = g->cc_major;
    *minor = g->cc_minor;
    RETURN(NVML_SUCCESS);
}

/* ------------------------------------------------------------------ MIG */

nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *currentMode, unsigned int *pendingMode)
{
    ENTER();
    DEVICE(device, g, F_MIG);
    NEED(currentMode && pendingMode);
    *currentMode = g->mig_current;
    *pendingMode = g->mig_pending;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count)
{
    ENTER();
    DEVICE(device, g, F_MIG);
    NEED(count);
    *count = g->mig_current ? (unsigned)MAX_MIG : 0;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index, nvmlDevice_t *migDevice)
{
    ENTER();
    DEVICE(device, g, F_MIG);
    NEED(migDevice);
    if (!g->mig_current)
        RETURN(NVML_ERROR_INVALID_ARGUMENT);
    /* Like the real library: indexes past the created instances are not found. */
    if (index >= (unsigned)g->mig_count || index >= MAX_MIG)
        RETURN(NVML_ERROR_NOT_FOUND);
    *migDevice = &mig_handles[device->gpu][index];
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t device, unsigned int *isMigDevice)
{
    ENTER();
    DEVICE(device, g, 0);
    NEED(isMigDevice);
    *isMigDevice = device->mig >= 0;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t migDevice, nvmlDevice_t *device)
{
    ENTER();
    DEVICE(migDevice, g, 0);
    NEED(device);
    if (migDevice->mig < 0)
        RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *device = &gpu_handles[migDevice->gpu];
    RETURN(NVML_SUCCESS);
}

/* --------------------------------------------------------------- memory */

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory)
{
    ENTER();
    DEVICE(device, g, F_MEMORY);
    NEED(memory);
    if (device->mig >= 0) {
        memory->total = g->mig[device->mig].memory_total;
        memory->used = g->mig[device->mig].memory_used;
        memory->free = memory->total - memory->used;
        RETURN(NVML_SUCCESS);
    }
    /* v1 counts the reserved memory as used */
    memory->total = g->memory_total;
    memory->used = g->memory_used + g->memory_reserved;
    memory->free = g->memory_free;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory)
{
    ENTER();
    DEVICE(device, g, F_MEMORY | F_MEMORY_V2);
    NEED(memory);
    if (memory->version != nvmlMemory_v2)
        RETURN(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    if (device->mig >= 0) {
        memory->total = g->mig[device->mig].memory_total;
        memory->reserved = 0;
        memory->used = g->mig[device->mig].memory_used;
        memory->free = memory->total - memory->used;
        RETURN(NVML_SUCCESS);
    }
    memory->total = g->memory_total;
    memory->reserved = g->memory_reserved;
    memory->used = g->memory_used;
    memory->free = g->memory_free;
    RETURN(NVML_SUCCESS);
}

/* ---------------------------------------------------- power and thermals */

nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t device, unsigned int *limit)
{
    ENTER();
    DEVICE(device, g, F_POWER_LIMIT);
    NEED(limit);
    *limit = g->power_limit_mw;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit)
{
    return nvmlDeviceGetPowerManagementLimit(device, limit);
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power)
{
    ENTER();
    DEVICE(device, g, F_POWER_DRAW);
    NEED(power);
    *power = g->power_draw_mw;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, nvmlTemperatureSensors_t sensorType, unsigned int *temp)
{
    ENTER();
    DEVICE(device, g, F_TEMPERATURE);
    NEED(temp);
    if (sensorType != NVML_TEMPERATURE_GPU)
        RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *temp = g->temperature;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization)
{
    ENTER();
    DEVICE(device, g, F_UTILIZATION);
    NEED(utilization);
    if (device->mig >= 0) {
        int util = g->mig[device->mig].util_gpu;
        if (util < 0)
            RETURN(NVML_ERROR_NOT_SUPPORTED);
        utilization->gpu = (unsigned)util;
        utilization->memory = 0;
        RETURN(NVML_SUCCESS);
    }
    utilization->gpu = g->util_gpu;
    utilization->memory = g->util_memory;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, nvmlClockType_t type, unsigned int *clock)
{
    ENTER();
    DEVICE(device, g, 0);
    NEED(clock);
    if (type == NVML_CLOCK_SM) {
        if (g->unsupported & F_CLOCK_SM)
            RETURN(NVML_ERROR_NOT_SUPPORTED);
        *clock = g->clock_sm;
    } else if (type == NVML_CLOCK_MEM) {
        if (g->unsupported & F_CLOCK_MEM)
            RETURN(NVML_ERROR_NOT_SUPPORTED);
        *clock = g->clock_mem;
    } else {
        RETURN(NVML_ERROR_NOT_SUPPORTED);
    }
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t device, unsigned long long *clocksEventReasons)
{
    ENTER();
    DEVICE(device, g, F_CLOCK_EVENTS);
    NEED(clocksEventReasons);
    *clocksEventReasons = g->clock_event_reasons;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t device, unsigned long long *clocksThrottleReasons)
{
    return nvmlDeviceGetCurrentClocksEventReasons(device, clocksThrottleReasons);
}

/* ---------------------------------------------------------- reliability */

nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t device, nvmlMemoryErrorType_t errorType,
                                         nvmlEccCounterType_t counterType, unsigned long long *eccCounts)
{
    ENTER();
    DEVICE(device, g, F_ECC);
    NEED(eccCounts);
    if ((unsigned)errorType > 1 || (unsigned)counterType > 1)
        RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *eccCounts = g->ecc[errorType][counterType];
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetRetiredPages(nvmlDevice_t device, nvmlPageRetirementCause_t cause, unsigned int *pageCount,
                                       unsigned long long *addresses)
{
    ENTER();
    DEVICE(device, g, F_RETIRED_PAGES);
    NEED(pageCount);
    unsigned n = cause == NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS ? g->retired_sbe : g->retired_dbe;
    if (!addresses || *pageCount < n) {
        *pageCount = n;
        RETURN(n == 0 ? NVML_SUCCESS : NVML_ERROR_INSUFFICIENT_SIZE);
    }
    for (unsigned i = 0; i < n; i++)
        addresses[i] = 0x1000ULL * (i + 1) + (unsigned long long)cause;
    *pageCount = n;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetRetiredPagesPendingStatus(nvmlDevice_t device, nvmlEnableState_t *isPending)
{
    ENTER();
    DEVICE(device, g, F_RETIRED_PAGES);
    NEED(isPending);
    *isPending = g->retired_pending ? NVML_FEATURE_ENABLED : NVML_FEATURE_DISABLED;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetRemappedRows(nvmlDevice_t device, unsigned int *corrRows, unsigned int *uncRows,
                                       unsigned int *isPending, unsigned int *failureOccurred)
{
    ENTER();
    DEVICE(device, g, F_REMAPPED_ROWS);
    NEED(corrRows && uncRows && isPending && failureOccurred);
    *corrRows = g->remap_corr;
    *uncRows = g->remap_unc;
    *isPending = g->remap_pending;
    *failureOccurred = g->remap_failure;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetPcieReplayCounter(nvmlDevice_t device, unsigned int *value)
{
    ENTER();
    DEVICE(device, g, F_PCIE_REPLAY);
    NEED(value);
    *value = g->pcie_replay;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t device, unsigned int link, nvmlEnableState_t *isActive)
{
    ENTER();
    DEVICE(device, g, F_NVLINK);
    NEED(isActive);
    if (link >= (unsigned)g->nvlink_count)
        RETURN(g->nvlink_count == 0 ? NVML_ERROR_NOT_SUPPORTED : NVML_ERROR_INVALID_ARGUMENT);
    *isActive = g->nvlink[link] ? NVML_FEATURE_ENABLED : NVML_FEATURE_DISABLED;
    RETURN(NVML_SUCCESS);
}

static unsigned mig_gi(const struct gpu_spec *g, int m) { return g->mig[m].gi ? g->mig[m].gi : (unsigned)m + 1; }

/* The processes of `kind` (bit mask) on the device; a MIG handle sees its own GPU instance's. */
static nvmlReturn_t list_processes(nvmlDevice_t device, const struct gpu_spec *g, unsigned kind, unsigned int *infoCount,
                                   nvmlProcessInfo_t *infos)
{
    unsigned want_gi = device->mig >= 0 ? mig_gi(g, device->mig) : 0xFFFFFFFFu;
    unsigned n = 0;
    if (g->proc_count == 0) {
        n = kind & 1 ? g->compute_processes : 0;
        if (device->mig >= 0)
            n = 0;
    } else {
        for (int i = 0; i < g->proc_count; i++)
            if ((g->procs[i].kind & kind) && (device->mig < 0 || g->procs[i].gi == want_gi))
                n++;
    }
    if (!infos || *infoCount < n) {
        *infoCount = n;
        return n == 0 ? NVML_SUCCESS : NVML_ERROR_INSUFFICIENT_SIZE;
    }
    unsigned k = 0;
    if (g->proc_count == 0) {
        for (; k < n; k++) {
            memset(&infos[k], 0, sizeof infos[k]);
            infos[k].pid = 1000 + k;
            infos[k].usedGpuMemory = 1024ULL * 1024 * 1024;
            infos[k].gpuInstanceId = 0xFFFFFFFFu;
            infos[k].computeInstanceId = 0xFFFFFFFFu;
        }
    } else {
        for (int i = 0; i < g->proc_count; i++) {
            const struct proc_spec *p = &g->procs[i];
            if (!(p->kind & kind) || (device->mig >= 0 && p->gi != want_gi))
                continue;
            memset(&infos[k], 0, sizeof infos[k]);
            infos[k].pid = p->pid;
            infos[k].usedGpuMemory = p->used_memory;
            infos[k].gpuInstanceId = p->gi;
            infos[k].computeInstanceId = p->gi == 0xFFFFFFFFu ? 0xFFFFFFFFu : 0;
            k++;
        }
    }
    *infoCount = n;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *infoCount,
                                                     nvmlProcessInfo_t *infos)
{
    ENTER();
    DEVICE(device, g, F_PROCESSES);
    NEED(infoCount);
    RETURN(list_processes(device, g, 1, infoCount, infos));
}

nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t device, unsigned int *infoCount,
                                                      nvmlProcessInfo_t *infos)
{
    ENTER();
    DEVICE(device, g, F_GRAPHICS);
    NEED(infoCount);
    RETURN(list_processes(device, g, 2, infoCount, infos));
}

/* One sample per process with utilization set, stamped now (NVML stamps
 * samples with the CPU clock in microseconds), so each query sees fresh ones. */
nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t device, nvmlProcessUtilizationSample_t *utilization,
                                             unsigned int *processSamplesCount, unsigned long long lastSeenTimeStamp)
{
    ENTER();
    DEVICE(device, g, F_PROCESS_UTIL);
    NEED(processSamplesCount);
    if (device->mig >= 0 || g->mig_current)
        RETURN(NVML_ERROR_NOT_SUPPORTED); /* as nvml.h says of MIG-enabled GPUs */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    unsigned long long stamp = (unsigned long long)now.tv_sec * 1000000ULL + (unsigned long long)now.tv_nsec / 1000;
    if (stamp <= lastSeenTimeStamp)
        stamp = lastSeenTimeStamp + 1;
    unsigned n = 0;
    for (int i = 0; i < g->proc_count; i++)
        if (g->procs[i].sm >= 0 || g->procs[i].mem >= 0)
            n++;
    if (n == 0)
        RETURN(NVML_ERROR_NOT_FOUND);
    if (!utilization || *processSamplesCount < n) {
        *processSamplesCount = n;
        RETURN(NVML_ERROR_INSUFFICIENT_SIZE);
    }
    static unsigned queries;
    unsigned jitter = g->util_jitter ? queries++ % 3 : 0;
    unsigned k = 0;
    for (int i = 0; i < g->proc_count; i++) {
        const struct proc_spec *p = &g->procs[i];
        if (p->sm < 0 && p->mem < 0)
            continue;
        memset(&utilization[k], 0, sizeof utilization[k]);
        utilization[k].pid = p->pid;
        utilization[k].timeStamp = stamp;
        utilization[k].smUtil = p->sm < 0 ? 0 : (unsigned)p->sm + jitter;
        utilization[k].memUtil = p->mem < 0 ? 0 : (unsigned)p->mem;
        k++;
    }
    *processSamplesCount = n;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t device, unsigned int *id)
{
    ENTER();
    DEVICE(device, g, 0);
    NEED(id);
    if (device->mig < 0)
        RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *id = mig_gi(g, device->mig);
    RETURN(NVML_SUCCESS);
}

/* ---------------------------------------------------------- field values */

nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t device, int valuesCount, nvmlFieldValue_t *values)
{
    ENTER();
    DEVICE(device, g, 0);
    NEED(values && valuesCount > 0);
    for (int i = 0; i < valuesCount; i++) {
        nvmlFieldValue_t *v = &values[i];
        v->timestamp = 0;
        v->latencyUsec = 0;
        if (v->fieldId == NVML_FI_DEV_GET_GPU_RECOVERY_ACTION && !(g->unsupported & F_RECOVERY_ACTION)) {
            v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
            v->value.uiVal = g->recovery_action;
            v->nvmlReturn = NVML_SUCCESS;
        } else {
            v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
        }
    }
    RETURN(NVML_SUCCESS);
}

/* --------------------------------------------------------------- events */

nvmlReturn_t nvmlDeviceGetSupportedEventTypes(nvmlDevice_t device, unsigned long long *eventTypes)
{
    ENTER();
    DEVICE(device, g, F_EVENTS);
    NEED(eventTypes);
    *eventTypes = nvmlEventTypeXidCriticalError | nvmlEventTypeSingleBitEccError | nvmlEventTypeDoubleBitEccError;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set)
{
    ENTER();
    NEED(set);
    for (int i = 0; i < MAX_SETS; i++) {
        if (!event_sets[i].in_use) {
            memset(&event_sets[i], 0, sizeof event_sets[i]);
            event_sets[i].in_use = 1;
            /* like the driver: only events from now on are delivered */
            event_sets[i].last_seq = max_event_seq();
            *set = &event_sets[i];
            RETURN(NVML_SUCCESS);
        }
    }
    RETURN(NVML_ERROR_MEMORY);
}

nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t device, unsigned long long eventTypes, nvmlEventSet_t set)
{
    ENTER();
    DEVICE(device, g, F_EVENTS);
    if (!set || !set->in_use || device->mig >= 0)
        RETURN(NVML_ERROR_INVALID_ARGUMENT);
    set->mask[device->gpu] |= eventTypes;
    RETURN(NVML_SUCCESS);
}

/* The next XID for a GPU registered in this set, or NULL. Lock held. */
static const struct event_spec *next_event(nvmlEventSet_t set)
{
    const struct event_spec *best = NULL;
    for (int i = 0; i < cfg.event_count; i++) {
        const struct event_spec *e = &cfg.events[i];
        if (e->seq <= set->last_seq || e->gpu < 0 || e->gpu >= MAX_GPUS)
            continue;
        if (!(set->mask[e->gpu] & nvmlEventTypeXidCriticalError))
            continue;
        if (!best || e->seq < best->seq)
            best = e;
    }
    return best;
}

nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        ENTER();
        if (!set || !set->in_use || !data)
            RETURN(NVML_ERROR_INVALID_ARGUMENT);
        const struct event_spec *e = next_event(set);
        if (e) {
            memset(data, 0, sizeof *data);
            data->device = &gpu_handles[e->gpu];
            data->eventType = nvmlEventTypeXidCriticalError;
            data->eventData = e->xid;
            data->gpuInstanceId = 0xFFFFFFFFu;
            data->computeInstanceId = 0xFFFFFFFFu;
            set->last_seq = e->seq;
            RETURN(NVML_SUCCESS);
        }
        pthread_mutex_unlock(&lock);
        clock_gettime(CLOCK_MONOTONIC, &now);
        long elapsed_ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (elapsed_ms >= (long)timeoutms)
            return NVML_ERROR_TIMEOUT;
        struct timespec nap = {0, 5 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
}

nvmlReturn_t nvmlEventSetWait(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms)
{
    return nvmlEventSetWait_v2(set, data, timeoutms);
}

nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set)
{
    ENTER();
    if (!set || !set->in_use)
        RETURN(NVML_ERROR_INVALID_ARGUMENT);
    set->in_use = 0;
    RETURN(NVML_SUCCESS);
}
