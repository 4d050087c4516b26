/* The fake kernel behind tests/util/fake_kvm.h. One lock over everything: vCPU threads and
 * the test thread both call in. fds are numbers far above any real one, so a stray real
 * close() or ioctl() on them fails instead of hitting a real file. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fake_kvm.h"
#include "libvmm/kvm.h"

#define FD_SYS 0x40000000
#define FD_VM 0x40000100  /* + vm index */
#define FD_VCPU 0x40010000 /* + vm index * 256 + vCPU id */
#define MAX_VMS 8
#define MAX_VCPUS 64
#define MAX_SLOTS 16
#define MAX_SCRIPT 256
#define MAX_LOG 65536
#define RUN_SIZE (3 * 4096)
#define IO_DATA_OFFSET 4096

static const uint32_t msr_list[] = { 0x10 /* TSC */, 0x174, 0x175, 0x176, 0xc0000081,
				     0xc0000082, 0xc0000100, 0x6e0 /* TSC deadline */ };
#define NMSR (sizeof(msr_list) / sizeof(msr_list[0]))

/* Not an exit: a read of guest RAM at gpa (fake_kvm_script_touch). */
#define FAKE_TOUCH 0xfffffff0u

struct exit_script {
	uint32_t reason;
	uint64_t gpa;
	uint16_t port;
	uint32_t len;
	uint8_t data[256];
};

struct vcpu {
	int live;
	struct fake_kvm_vcpu_state s;
	uint64_t msr[NMSR];
	struct kvm_cpuid_entry2 cpuid[256];
	uint32_t ncpuid;
	struct kvm_run *run;
	struct kvm_dirty_gfn *ring;
	uint32_t ring_push;
	struct exit_script script[MAX_SCRIPT];
	uint32_t nscript, taken;
	int touched; /* the byte the last touch read, -1 before any */
};

struct slot {
	struct kvm_userspace_memory_region r;
	uint64_t *dirty; /* KVM's bitmap */
	uint64_t cleared;
};

struct vm {
	int live;
	int manual_protect;
	uint32_t ring_bytes;
	struct slot slots[MAX_SLOTS];
	struct kvm_irqchip chip[3];
	struct kvm_pit_state2 pit;
	uint64_t clock;
	uint8_t irq_level[32]; /* KVM_IRQ_LINE: each line's last level */
	uint32_t irq_raises[32]; /* how often each went from 0 to 1 */
	struct kvm_ioeventfd ioeventfds[16]; /* KVM_IOEVENTFD assigned, in order */
	uint32_t nioeventfd;
	struct kvm_irqfd irqfds[16];         /* KVM_IRQFD assigned, in order */
	uint32_t nirqfd;
	struct vcpu vcpus[MAX_VCPUS];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct vm vms[MAX_VMS];
static int newest = -1;
static int caps_manual = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;
static uint32_t caps_ring = 65536 * sizeof(struct kvm_dirty_gfn);
static int caps_nr_vcpus = 8, caps_max_vcpus = MAX_VCPUS;
static uint32_t refused_msr; /* KVM_SET_MSRS stops at this index; 0: none */
static struct kvm_cpuid_entry2 supported[64];
static uint32_t nsupported;
static int tsc_scaling = 1;
static uint32_t host_tsc_khz = 2000000;
static struct fake_kvm_call call_log[MAX_LOG];
static size_t nlog;

static int fail(int e)
{
	errno = e;
	return -1;
}

static uint64_t slot_pages(const struct slot *s)
{
	return s->r.memory_size / 4096;
}

static size_t slot_bm_bytes(const struct slot *s)
{
	return (slot_pages(s) + 63) / 64 * 8;
}

static struct vcpu *vcpu_of_fd(int fd)
{
	int v = (fd - FD_VCPU) / 256, id = (fd - FD_VCPU) % 256;

	if (fd < FD_VCPU || v >= MAX_VMS || id >= MAX_VCPUS || !vms[v].vcpus[id].live)
		return NULL;
	return &vms[v].vcpus[id];
}

static struct vm *vm_of_fd(int fd)
{
	int v = fd - FD_VM;

	return v >= 0 && v < MAX_VMS && vms[v].live ? &vms[v] : NULL;
}

/* ------------------------------------------------------------------ the host's CPUID */

#define BIT(n) (1u << (n))
#define IDX KVM_CPUID_FLAG_SIGNIFCANT_INDEX

/* A modern x86-64 host, as KVM_GET_SUPPORTED_CPUID would describe it: every psABI level up
 * to AVX-512, SHA, GFNI, VAES, and both nested VMX and SVM (no real CPU has both; the fake
 * has them so that masking either shows). */
static const struct kvm_cpuid_entry2 default_supported[] = {
	{ .function = 0, .eax = 0xd, .ebx = 0x68747541, .edx = 0x69746e65, .ecx = 0x444d4163 },
	{ .function = 1, .eax = 0x00a20f12,
	  .ecx = BIT(0) | BIT(1) | BIT(5) | BIT(9) | BIT(12) | BIT(13) | BIT(19) | BIT(20) |
		 BIT(21) | BIT(22) | BIT(23) | BIT(25) | BIT(26) | BIT(28) | BIT(29) | BIT(30),
	  .edx = 0x178bfbff },
	{ .function = 7, .index = 0, .flags = IDX, .eax = 1,
	  .ebx = BIT(0) | BIT(3) | BIT(5) | BIT(7) | BIT(8) | BIT(9) | BIT(10) | BIT(16) |
		 BIT(17) | BIT(18) | BIT(19) | BIT(20) | BIT(23) | BIT(24) | BIT(28) | BIT(29) |
		 BIT(30) | BIT(31),
	  .ecx = BIT(1) | BIT(2) | BIT(3) | BIT(8) | BIT(9) | BIT(10) | BIT(22),
	  .edx = BIT(4) | BIT(26) | BIT(29) | BIT(31) },
	{ .function = 7, .index = 1, .flags = IDX, .eax = BIT(4) | BIT(5) },
	{ .function = 0xd, .index = 0, .flags = IDX, .eax = 0xe7, .ebx = 0x340, .ecx = 0xa80 },
	{ .function = 0xd, .index = 1, .flags = IDX, .eax = 0xf },
	{ .function = 0xd, .index = 2, .flags = IDX, .eax = 256, .ebx = 576 },
	{ .function = 0xd, .index = 5, .flags = IDX, .eax = 64, .ebx = 0x440 },
	{ .function = 0xd, .index = 6, .flags = IDX, .eax = 512, .ebx = 0x480 },
	{ .function = 0xd, .index = 7, .flags = IDX, .eax = 1024, .ebx = 0x680 },
	{ .function = 0x40000000, .eax = 0x40000001, .ebx = 0x4b4d564b, .ecx = 0x564b4d56,
	  .edx = 0x4d },
	{ .function = 0x40000001, .eax = 0x01007afb },
	{ .function = 0x80000000, .eax = 0x8000000a, .ebx = 0x68747541, .edx = 0x69746e65,
	  .ecx = 0x444d4163 },
	{ .function = 0x80000001, .eax = 0x00a20f12,
	  .ecx = BIT(0) | BIT(2) | BIT(5) | BIT(6) | BIT(7) | BIT(8), .edx = 0x2fd3fbff },
	{ .function = 0x80000007, .edx = BIT(8) },
	{ .function = 0x80000008, .eax = 0x3030,
	  .ebx = BIT(0) | BIT(9) | BIT(12) | BIT(24) | BIT(30) },
	{ .function = 0x8000000a, .eax = 1, .ebx = 0x8000, .edx = 0x1b6bf },
};

static void supported_reset(void)
{
	nsupported = sizeof(default_supported) / sizeof(default_supported[0]);
	memcpy(supported, default_supported, sizeof(default_supported));
}

/* ------------------------------------------------------------------ /dev/kvm */

static int check_extension(long cap)
{
	switch (cap) {
	case KVM_CAP_IRQCHIP:
	case KVM_CAP_PIT2:
	case KVM_CAP_IMMEDIATE_EXIT:
	case KVM_CAP_XSAVE:
	case KVM_CAP_VCPU_EVENTS:
	case KVM_CAP_ADJUST_CLOCK:
	case KVM_CAP_XCRS:
	case KVM_CAP_GET_TSC_KHZ:
		return 1;
	case KVM_CAP_TSC_CONTROL:
		return tsc_scaling;
	case KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2:
		return caps_manual;
	case KVM_CAP_DIRTY_LOG_RING_ACQ_REL:
		return (int)caps_ring;
	case KVM_CAP_NR_VCPUS:
		return caps_nr_vcpus;
	case KVM_CAP_MAX_VCPUS:
		return caps_max_vcpus;
	default:
		return 0;
	}
}

static int sys_ioctl(unsigned long req, void *arg)
{
	switch (req) {
	case KVM_GET_API_VERSION:
		return KVM_API_VERSION;
	case KVM_CHECK_EXTENSION:
		return check_extension((long)arg);
	case KVM_GET_VCPU_MMAP_SIZE:
		return RUN_SIZE;
	case KVM_GET_MSR_INDEX_LIST: {
		struct kvm_msr_list *l = arg;
		uint32_t room = l->nmsrs;

		l->nmsrs = NMSR;
		if (room < NMSR)
			return fail(E2BIG);
		memcpy(l->indices, msr_list, sizeof(msr_list));
		return 0;
	}
	case KVM_GET_SUPPORTED_CPUID: {
		struct kvm_cpuid2 *c = arg;

		if (c->nent < nsupported)
			return fail(E2BIG);
		c->nent = nsupported;
		memcpy(c->entries, supported, nsupported * sizeof(c->entries[0]));
		return 0;
	}
	case KVM_CREATE_VM:
		for (int v = 0; v < MAX_VMS; v++)
			if (!vms[v].live) {
				/* Not the vCPUs: 5 MiB, and each is cleared when its fd closes
				 * and again when it is created (the fuzzers make a VM per input). */
				memset(&vms[v], 0, offsetof(struct vm, vcpus));
				vms[v].live = 1;
				newest = v;
				return FD_VM + v;
			}
		return fail(EMFILE);
	default:
		return fail(ENOTTY);
	}
}

/* ------------------------------------------------------------------ VM */

static int set_region(struct vm *vm, const struct kvm_userspace_memory_region *r)
{
	struct slot *s;

	if (r->slot >= MAX_SLOTS)
		return fail(EINVAL);
	s = &vm->slots[r->slot];
	if (s->r.memory_size != r->memory_size) {
		free(s->dirty);
		s->dirty = NULL;
	}
	if (s->dirty && (r->flags & ~s->r.flags & KVM_MEM_LOG_DIRTY_PAGES))
		memset(s->dirty, 0, slot_bm_bytes(s)); /* logging starts with a clean bitmap */
	s->r = *r;
	if (!s->dirty && r->memory_size)
		s->dirty = calloc(1, slot_bm_bytes(s));
	return 0;
}

static int get_dirty_log(struct vm *vm, struct kvm_dirty_log *log)
{
	struct slot *s;

	if (log->slot >= MAX_SLOTS || !vm->slots[log->slot].dirty)
		return fail(ENOENT);
	s = &vm->slots[log->slot];
	if (!(s->r.flags & KVM_MEM_LOG_DIRTY_PAGES))
		return fail(ENOENT);
	memcpy(log->dirty_bitmap, s->dirty, slot_bm_bytes(s));
	if (!vm->manual_protect)
		memset(s->dirty, 0, slot_bm_bytes(s));
	return 0;
}

static int clear_dirty_log(struct vm *vm, struct kvm_clear_dirty_log *cl)
{
	const uint64_t *bm = cl->dirty_bitmap;
	struct slot *s;

	if (cl->slot >= MAX_SLOTS || !vm->slots[cl->slot].dirty || !vm->manual_protect)
		return fail(EINVAL);
	s = &vm->slots[cl->slot];
	/* KVM's own rules: a 64-aligned start, whole words unless the range ends the slot. */
	if (cl->first_page % 64 || cl->first_page + cl->num_pages > slot_pages(s) ||
	    (cl->num_pages % 64 && cl->first_page + cl->num_pages != slot_pages(s)))
		return fail(EINVAL);
	for (uint64_t i = 0; i < cl->num_pages; i++)
		if (bm[i / 64] >> (i % 64) & 1) {
			uint64_t p = cl->first_page + i;

			s->dirty[p / 64] &= ~(1ull << (p % 64));
			s->cleared++;
		}
	return 0;
}

static int create_vcpu(struct vm *vm, unsigned long id)
{
	struct vcpu *c;

	if (id >= MAX_VCPUS || vm->vcpus[id].live)
		return fail(EINVAL);
	c = &vm->vcpus[id];
	memset(c, 0, sizeof(*c));
	c->live = 1;
	c->touched = -1;
	c->s.tsc_khz = host_tsc_khz;
	c->s.mp_state.mp_state = id ? KVM_MP_STATE_UNINITIALIZED : KVM_MP_STATE_RUNNABLE;
	c->s.sregs.apic_base = 0xfee00000 | (id ? 0 : 0x100) | 0x800;
	c->s.regs.rflags = 2;
	c->s.xcrs.nr_xcrs = 1; /* XCR0: x87 and SSE */
	c->s.xcrs.xcrs[0].value = 3;
	return FD_VCPU + (int)(vm - vms) * 256 + (int)id;
}

static int vm_ioctl(struct vm *vm, unsigned long req, void *arg)
{
	switch (req) {
	case KVM_SET_IDENTITY_MAP_ADDR:
	case KVM_SET_TSS_ADDR:
	case KVM_CREATE_IRQCHIP:
	case KVM_CREATE_PIT2:
		return 0;
	case KVM_IRQ_LINE: {
		const struct kvm_irq_level *l = arg;

		if (l->irq >= 32)
			return fail(EINVAL);
		if (l->level && !vm->irq_level[l->irq])
			vm->irq_raises[l->irq]++;
		vm->irq_level[l->irq] = !!l->level;
		return 0;
	}
	case KVM_IOEVENTFD: {
		const struct kvm_ioeventfd *e = arg;

		if (e->flags & KVM_IOEVENTFD_FLAG_DEASSIGN) {
			for (uint32_t i = 0; i < vm->nioeventfd; i++)
				if (vm->ioeventfds[i].addr == e->addr &&
				    vm->ioeventfds[i].datamatch == e->datamatch &&
				    vm->ioeventfds[i].fd == e->fd) {
					vm->ioeventfds[i] = vm->ioeventfds[--vm->nioeventfd];
					return 0;
				}
			return fail(ENOENT);
		}
		if (vm->nioeventfd == 16)
			return fail(ENOSPC);
		vm->ioeventfds[vm->nioeventfd++] = *e;
		return 0;
	}
	case KVM_IRQFD: {
		const struct kvm_irqfd *f = arg;

		if (f->flags & KVM_IRQFD_FLAG_DEASSIGN) {
			for (uint32_t i = 0; i < vm->nirqfd; i++)
				if (vm->irqfds[i].gsi == f->gsi && vm->irqfds[i].fd == f->fd) {
					vm->irqfds[i] = vm->irqfds[--vm->nirqfd];
					return 0;
				}
			return fail(ENOENT);
		}
		if (vm->nirqfd == 16)
			return fail(ENOSPC);
		vm->irqfds[vm->nirqfd++] = *f;
		return 0;
	}
	case KVM_SET_USER_MEMORY_REGION:
		return set_region(vm, arg);
	case KVM_CREATE_VCPU:
		return create_vcpu(vm, (unsigned long)arg);
	case KVM_ENABLE_CAP: {
		struct kvm_enable_cap *cap = arg;

		if (cap->cap == KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 && caps_manual) {
			vm->manual_protect = 1;
			return 0;
		}
		if (cap->cap == KVM_CAP_DIRTY_LOG_RING_ACQ_REL && caps_ring &&
		    cap->args[0] <= caps_ring) {
			vm->ring_bytes = (uint32_t)cap->args[0];
			return 0;
		}
		return fail(EINVAL);
	}
	case KVM_GET_DIRTY_LOG:
		return get_dirty_log(vm, arg);
	case KVM_CLEAR_DIRTY_LOG:
		return clear_dirty_log(vm, arg);
	case KVM_RESET_DIRTY_RINGS:
		return 0;
	case KVM_GET_IRQCHIP:
	case KVM_SET_IRQCHIP: {
		struct kvm_irqchip *c = arg;

		if (c->chip_id > 2)
			return fail(EINVAL);
		if (req == KVM_GET_IRQCHIP) {
			uint32_t id = c->chip_id; /* KVM keeps the caller's chip_id */

			*c = vm->chip[id];
			c->chip_id = id;
		} else
			vm->chip[c->chip_id] = *c;
		return 0;
	}
	case KVM_GET_PIT2:
		*(struct kvm_pit_state2 *)arg = vm->pit;
		return 0;
	case KVM_SET_PIT2:
		vm->pit = *(struct kvm_pit_state2 *)arg;
		return 0;
	case KVM_GET_CLOCK:
		memset(arg, 0, sizeof(struct kvm_clock_data));
		((struct kvm_clock_data *)arg)->clock = vm->clock;
		return 0;
	case KVM_SET_CLOCK:
		vm->clock = ((struct kvm_clock_data *)arg)->clock;
		return 0;
	default:
		return fail(ENOTTY);
	}
}

/* ------------------------------------------------------------------ vCPU */

static int msr_slot(uint32_t index)
{
	for (uint32_t i = 0; i < NMSR; i++)
		if (msr_list[i] == index)
			return (int)i;
	return -1;
}

/* Like KVM: processes entries in order, stops at the first unknown one, returns how many. */
static int msrs(struct vcpu *c, struct kvm_msrs *m, int set)
{
	uint32_t i;

	for (i = 0; i < m->nmsrs; i++) {
		int k = msr_slot(m->entries[i].index);

		if (k < 0 || (set && refused_msr && m->entries[i].index == refused_msr))
			break;
		if (set)
			c->msr[k] = m->entries[i].data;
		else
			m->entries[i].data = c->msr[k];
	}
	return (int)i;
}

/* The host address of guest physical address gpa in vm's slots, NULL outside them. */
static volatile uint8_t *slot_host(struct vm *vm, uint64_t gpa)
{
	for (int i = 0; i < MAX_SLOTS; i++) {
		const struct kvm_userspace_memory_region *r = &vm->slots[i].r;

		if (r->memory_size && gpa >= r->guest_phys_addr &&
		    gpa - r->guest_phys_addr < r->memory_size)
			return (volatile uint8_t *)(uintptr_t)(r->userspace_addr + gpa -
								r->guest_phys_addr);
	}
	return NULL;
}

/* Unlocks while the "guest runs", so a kick (immediate_exit) and other calls get through. */
static int run(struct vm *vm, struct vcpu *c)
{
	for (;;) {
		if (__atomic_load_n(&c->run->immediate_exit, __ATOMIC_SEQ_CST))
			return fail(EINTR);
		if (c->taken < c->nscript && c->script[c->taken].reason == FAKE_TOUCH) {
			volatile uint8_t *p = slot_host(vm, c->script[c->taken].gpa);
			int v;

			/* As KVM faults a guest page in: outside its locks, waiting for it. */
			pthread_mutex_unlock(&lock);
			v = p ? *p : -1;
			pthread_mutex_lock(&lock);
			c->touched = v;
			c->taken++;
			continue;
		}
		if (c->taken < c->nscript) {
			struct exit_script *e = &c->script[c->taken++];

			c->run->exit_reason = e->reason;
			if (e->reason == KVM_EXIT_IO) {
				c->run->io.direction = KVM_EXIT_IO_OUT;
				c->run->io.size = 1;
				c->run->io.port = e->port;
				c->run->io.count = e->len;
				c->run->io.data_offset = IO_DATA_OFFSET;
				memcpy((uint8_t *)c->run + IO_DATA_OFFSET, e->data, e->len);
			}
			return 0;
		}
		pthread_mutex_unlock(&lock);
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
		pthread_mutex_lock(&lock);
	}
}

#define COPY_OUT(field) (memcpy(arg, &c->s.field, sizeof(c->s.field)), 0)
#define COPY_IN(field) (memcpy(&c->s.field, arg, sizeof(c->s.field)), 0)

static int vcpu_ioctl(struct vm *vm, struct vcpu *c, unsigned long req, void *arg)
{
	switch (req) {
	case KVM_RUN:
		return run(vm, c);
	case KVM_GET_REGS: return COPY_OUT(regs);
	case KVM_SET_REGS: return COPY_IN(regs);
	case KVM_GET_SREGS: return COPY_OUT(sregs);
	case KVM_SET_SREGS: return COPY_IN(sregs);
	case KVM_GET_FPU: return COPY_OUT(fpu);
	case KVM_SET_FPU: return COPY_IN(fpu);
	case KVM_GET_XSAVE: return COPY_OUT(xsave);
	case KVM_SET_XSAVE: return COPY_IN(xsave);
	case KVM_GET_XCRS: return COPY_OUT(xcrs);
	case KVM_SET_XCRS: return COPY_IN(xcrs);
	case KVM_GET_DEBUGREGS: return COPY_OUT(debugregs);
	case KVM_SET_DEBUGREGS: return COPY_IN(debugregs);
	case KVM_GET_LAPIC: return COPY_OUT(lapic);
	case KVM_SET_LAPIC: return COPY_IN(lapic);
	case KVM_GET_VCPU_EVENTS: return COPY_OUT(events);
	case KVM_SET_VCPU_EVENTS: return COPY_IN(events);
	case KVM_GET_MP_STATE: return COPY_OUT(mp_state);
	case KVM_SET_MP_STATE: return COPY_IN(mp_state);
	case KVM_GET_MSRS:
		return msrs(c, arg, 0);
	case KVM_SET_MSRS:
		return msrs(c, arg, 1);
	case KVM_GET_TSC_KHZ:
		return (int)c->s.tsc_khz;
	case KVM_SET_TSC_KHZ:
		/* Without TSC scaling only the host's own rate is taken. */
		if (!tsc_scaling && (uint32_t)(unsigned long)arg != host_tsc_khz)
			return fail(EINVAL);
		c->s.tsc_khz = (uint32_t)(unsigned long)arg;
		return 0;
	case KVM_SET_CPUID2: {
		const struct kvm_cpuid2 *cp = arg;

		if (cp->nent > 256)
			return fail(E2BIG);
		c->ncpuid = cp->nent;
		memcpy(c->cpuid, cp->entries, cp->nent * sizeof(cp->entries[0]));
		return 0;
	}
	case KVM_GET_CPUID2: {
		struct kvm_cpuid2 *cp = arg;

		if (cp->nent < c->ncpuid)
			return fail(E2BIG);
		cp->nent = c->ncpuid;
		memcpy(cp->entries, c->cpuid, c->ncpuid * sizeof(cp->entries[0]));
		return 0;
	}
	case KVM_KVMCLOCK_CTRL:
		return fail(EINVAL); /* as for a guest without kvmclock */
	default:
		return fail(ENOTTY);
	}
}

/* ------------------------------------------------------------------ the ops */

static int fake_open(void)
{
	return FD_SYS;
}

static int fake_ioctl(int fd, unsigned long req, void *arg)
{
	struct vcpu *c;
	struct vm *vm;
	int r;

	pthread_mutex_lock(&lock);
	if (nlog < MAX_LOG)
		call_log[nlog++] = (struct fake_kvm_call){ fd, req };
	if (fd == FD_SYS)
		r = sys_ioctl(req, arg);
	else if ((vm = vm_of_fd(fd)))
		r = vm_ioctl(vm, req, arg);
	else if ((c = vcpu_of_fd(fd)))
		r = vcpu_ioctl(&vms[(fd - FD_VCPU) / 256], c, req, arg);
	else
		r = fail(EBADF);
	pthread_mutex_unlock(&lock);
	return r;
}

static void *fake_mmap(int fd, size_t len, off_t offset)
{
	struct vcpu *c;
	void *p = NULL;

	pthread_mutex_lock(&lock);
	c = vcpu_of_fd(fd);
	if (c && offset == 0 && len == RUN_SIZE && !c->run) {
		c->run = aligned_alloc(4096, RUN_SIZE);
		if (c->run)
			memset(c->run, 0, RUN_SIZE);
		p = c->run;
	} else if (c && offset == (off_t)KVM_DIRTY_LOG_PAGE_OFFSET * 4096 && !c->ring &&
		   len == vms[(fd - FD_VCPU) / 256].ring_bytes) {
		c->ring = aligned_alloc(4096, (len + 4095) / 4096 * 4096);
		if (c->ring)
			memset(c->ring, 0, len);
		p = c->ring;
	}
	pthread_mutex_unlock(&lock);
	if (!p) {
		errno = EINVAL;
		return (void *)-1;
	}
	return p;
}

/* The areas stay owned by their vCPU (freed when its fd closes): nothing to do here. */
static int fake_munmap(void *p, size_t len)
{
	return 0;
}

static void vcpu_free(struct vcpu *c)
{
	free(c->run);
	free(c->ring);
	memset(c, 0, sizeof(*c));
}

static int fake_close(int fd)
{
	struct vcpu *c;
	struct vm *vm;

	pthread_mutex_lock(&lock);
	if ((c = vcpu_of_fd(fd))) {
		vcpu_free(c);
	} else if ((vm = vm_of_fd(fd))) {
		for (int i = 0; i < MAX_SLOTS; i++)
			free(vm->slots[i].dirty);
		for (int i = 0; i < MAX_VCPUS; i++)
			if (vm->vcpus[i].live)
				vcpu_free(&vm->vcpus[i]);
		memset(vm, 0, offsetof(struct vm, vcpus)); /* every vCPU is free by now */
	}
	pthread_mutex_unlock(&lock);
	return 0;
}

static const struct vmm__kvm_ops fake_ops = {
	.open_dev = fake_open,
	.ioctl = fake_ioctl,
	.mmap = fake_mmap,
	.munmap = fake_munmap,
	.close = fake_close,
};

/* ------------------------------------------------------------------ test side */

void fake_kvm_install(void)
{
	pthread_mutex_lock(&lock);
	for (int v = 0; v < MAX_VMS; v++)
		if (vms[v].live) {
			pthread_mutex_unlock(&lock);
			fake_close(FD_VM + v);
			pthread_mutex_lock(&lock);
		}
	newest = -1;
	nlog = 0;
	caps_manual = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;
	caps_ring = 65536 * sizeof(struct kvm_dirty_gfn);
	caps_nr_vcpus = 8, caps_max_vcpus = MAX_VCPUS;
	refused_msr = 0;
	supported_reset();
	tsc_scaling = 1;
	host_tsc_khz = 2000000;
	pthread_mutex_unlock(&lock);
	vmm__kvm_set_ops_for_tests(&fake_ops);
}

void fake_kvm_uninstall(void)
{
	vmm__kvm_set_ops_for_tests(NULL);
}

void fake_kvm_refuse_msr(uint32_t index)
{
	pthread_mutex_lock(&lock);
	refused_msr = index;
	pthread_mutex_unlock(&lock);
}

void fake_kvm_set_caps(int manual_protect, uint32_t dirty_ring_bytes)
{
	pthread_mutex_lock(&lock);
	caps_manual = manual_protect ? KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE |
					       KVM_DIRTY_LOG_INITIALLY_SET
				     : 0;
	caps_ring = dirty_ring_bytes;
	pthread_mutex_unlock(&lock);
}

void fake_kvm_set_vcpu_caps(int nr_vcpus, int max_vcpus)
{
	pthread_mutex_lock(&lock);
	caps_nr_vcpus = nr_vcpus, caps_max_vcpus = max_vcpus;
	pthread_mutex_unlock(&lock);
}

void fake_kvm_log_clear(void)
{
	pthread_mutex_lock(&lock);
	nlog = 0;
	pthread_mutex_unlock(&lock);
}

size_t fake_kvm_log(const struct fake_kvm_call **calls)
{
	*calls = call_log;
	return nlog;
}

int fake_kvm_log_find(unsigned long req, size_t from)
{
	int r = -1;

	pthread_mutex_lock(&lock);
	for (size_t i = from; i < nlog; i++)
		if (call_log[i].req == req) {
			r = (int)i;
			break;
		}
	pthread_mutex_unlock(&lock);
	return r;
}

static struct vcpu *newest_vcpu(uint32_t id)
{
	if (newest < 0 || id >= MAX_VCPUS || !vms[newest].vcpus[id].live)
		return NULL;
	return &vms[newest].vcpus[id];
}

struct fake_kvm_vcpu_state *fake_kvm_vcpu(uint32_t id)
{
	struct vcpu *c = newest_vcpu(id);

	return c ? &c->s : NULL;
}

int fake_kvm_vcpu_fd(uint32_t id)
{
	return newest_vcpu(id) ? FD_VCPU + newest * 256 + (int)id : -1;
}

int fake_kvm_vm_fd(void)
{
	return newest < 0 ? -1 : FD_VM + newest;
}

static void script_add(uint32_t id, const struct exit_script *e)
{
	struct vcpu *c;

	pthread_mutex_lock(&lock);
	c = newest_vcpu(id);
	if (c && c->nscript < MAX_SCRIPT)
		c->script[c->nscript++] = *e;
	pthread_mutex_unlock(&lock);
}

void fake_kvm_script_pio_out(uint32_t id, uint16_t port, const void *data, uint32_t len)
{
	struct exit_script e = { .reason = KVM_EXIT_IO, .port = port };

	while (len) {
		e.len = len < sizeof(e.data) ? len : sizeof(e.data);
		memcpy(e.data, data, e.len);
		script_add(id, &e);
		data = (const uint8_t *)data + e.len;
		len -= e.len;
	}
}

void fake_kvm_script_touch(uint32_t id, uint64_t gpa)
{
	script_add(id, &(struct exit_script){ .reason = FAKE_TOUCH, .gpa = gpa });
}

int fake_kvm_touched(uint32_t id)
{
	int v = -1;

	pthread_mutex_lock(&lock);
	if (newest >= 0 && id < MAX_VCPUS)
		v = vms[newest].vcpus[id].touched;
	pthread_mutex_unlock(&lock);
	return v;
}

void fake_kvm_script_exit(uint32_t id, uint32_t exit_reason)
{
	script_add(id, &(struct exit_script){ .reason = exit_reason });
}

int fake_kvm_script_wait(uint32_t id)
{
	for (int i = 0; i < 5000; i++) {
		struct vcpu *c;
		int done;

		pthread_mutex_lock(&lock);
		c = newest_vcpu(id);
		done = !c || c->taken >= c->nscript;
		pthread_mutex_unlock(&lock);
		if (done)
			return 0;
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	}
	return -1;
}

void fake_kvm_dirty_set(uint32_t slot, uint64_t page)
{
	pthread_mutex_lock(&lock);
	if (newest >= 0 && slot < MAX_SLOTS) {
		struct slot *s = &vms[newest].slots[slot];

		if (s->dirty && page < slot_pages(s) && (s->r.flags & KVM_MEM_LOG_DIRTY_PAGES))
			s->dirty[page / 64] |= 1ull << (page % 64);
	}
	pthread_mutex_unlock(&lock);
}

void fake_kvm_ring_push(uint32_t id, uint32_t slot, uint64_t offset)
{
	struct vcpu *c;

	pthread_mutex_lock(&lock);
	c = newest_vcpu(id);
	if (c && c->ring) {
		uint32_t n = vms[newest].ring_bytes / sizeof(struct kvm_dirty_gfn);
		struct kvm_dirty_gfn *e = &c->ring[c->ring_push++ % n];

		e->slot = slot;
		e->offset = offset;
		__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_DIRTY, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&lock);
}

int fake_kvm_slot_logging(uint32_t slot)
{
	int r;

	pthread_mutex_lock(&lock);
	r = newest >= 0 && slot < MAX_SLOTS &&
	    (vms[newest].slots[slot].r.flags & KVM_MEM_LOG_DIRTY_PAGES);
	pthread_mutex_unlock(&lock);
	return r;
}

uint64_t fake_kvm_cleared(uint32_t slot)
{
	uint64_t n;

	pthread_mutex_lock(&lock);
	n = newest >= 0 && slot < MAX_SLOTS ? vms[newest].slots[slot].cleared : 0;
	pthread_mutex_unlock(&lock);
	return n;
}

static uint32_t *entry_reg(struct kvm_cpuid_entry2 *e, int reg)
{
	switch (reg) {
	case FAKE_EAX: return &e->eax;
	case FAKE_EBX: return &e->ebx;
	case FAKE_ECX: return &e->ecx;
	default: return &e->edx;
	}
}

void fake_kvm_cpuid_clear(uint32_t leaf, uint32_t sub, int reg, uint32_t bit)
{
	pthread_mutex_lock(&lock);
	for (uint32_t i = 0; i < nsupported; i++)
		if (supported[i].function == leaf && supported[i].index == sub)
			*entry_reg(&supported[i], reg) &= ~(1u << bit);
	pthread_mutex_unlock(&lock);
}

void fake_kvm_no_tsc_scaling(uint32_t host_khz)
{
	pthread_mutex_lock(&lock);
	tsc_scaling = 0;
	host_tsc_khz = host_khz;
	pthread_mutex_unlock(&lock);
}

void fake_kvm_set_host_tsc_khz(uint32_t khz)
{
	pthread_mutex_lock(&lock);
	host_tsc_khz = khz;
	pthread_mutex_unlock(&lock);
}

int fake_kvm_vcpu_cpuid(uint32_t id, uint32_t leaf, uint32_t sub, struct kvm_cpuid_entry2 *out)
{
	struct vcpu *c;
	int r = -1;

	pthread_mutex_lock(&lock);
	c = newest_vcpu(id);
	for (uint32_t i = 0; c && i < c->ncpuid && r; i++)
		if (c->cpuid[i].function == leaf && c->cpuid[i].index == sub) {
			*out = c->cpuid[i];
			r = 0;
		}
	pthread_mutex_unlock(&lock);
	return r;
}

int fake_kvm_irq_level(uint32_t irq, uint32_t *raises)
{
	int level;

	pthread_mutex_lock(&lock);
	level = newest >= 0 && irq < 32 ? vms[newest].irq_level[irq] : -1;
	if (raises)
		*raises = newest >= 0 && irq < 32 ? vms[newest].irq_raises[irq] : 0;
	pthread_mutex_unlock(&lock);
	return level;
}

uint32_t fake_kvm_ioeventfds(struct kvm_ioeventfd *out, uint32_t max)
{
	uint32_t n = 0;

	pthread_mutex_lock(&lock);
	if (newest >= 0)
		for (n = 0; n < vms[newest].nioeventfd && n < max; n++)
			out[n] = vms[newest].ioeventfds[n];
	pthread_mutex_unlock(&lock);
	return n;
}

uint32_t fake_kvm_irqfds(struct kvm_irqfd *out, uint32_t max)
{
	uint32_t n = 0;

	pthread_mutex_lock(&lock);
	if (newest >= 0)
		for (n = 0; n < vms[newest].nirqfd && n < max; n++)
			out[n] = vms[newest].irqfds[n];
	pthread_mutex_unlock(&lock);
	return n;
}
