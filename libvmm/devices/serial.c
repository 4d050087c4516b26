/* The 8250/16550A UART: enough of it for polled and interrupt-driven guests (Linux's
 * 8250 driver included). Registers follow the National Semiconductor PC16550D data sheet. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "libvmm/bus.h"
#include "libvmm/device.h"
#include "libvmm/device_host.h"
#include "devices.pb-c.h"
#include "libvmm/devices/serial.h"
#include "libvmm/error_internal.h"

#define UART_RBR_THR 0
#define UART_IER 1
#define UART_IIR_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define IER_RDI 0x01
#define IER_THRI 0x02
#define IIR_NO_INT 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO 0xc0
#define LCR_DLAB 0x80
#define MCR_LOOP 0x10
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MSR_DEFAULT 0xb0 /* DCD, DSR, CTS: a modem that is always there */

#define RX_FIFO_SIZE (64 * 1024)

struct vmm__serial {
	const struct vmm__device_host *host;
	uint32_t irq;
	vmm_serial_fn out;
	void *out_opaque;
	pthread_mutex_t lock; /* guest (vCPU threads) and host input race on the FIFO */
	uint8_t ier, lcr, mcr, lsr, msr, scr, dll, dlm, fcr;
	int thr_interrupt;
	uint8_t rx[RX_FIFO_SIZE];
	uint32_t rx_head, rx_len;
};

static uint8_t iir(const struct vmm__serial *s)
{
	uint8_t fifo = (s->fcr & 1) ? IIR_FIFO : 0;

	if ((s->ier & IER_RDI) && s->rx_len)
		return fifo | IIR_RDI;
	if ((s->ier & IER_THRI) && s->thr_interrupt)
		return fifo | IIR_THRI;
	return fifo | IIR_NO_INT;
}

/* The line is level-triggered: it follows whether any enabled condition holds. */
static void update_irq(struct vmm__serial *s)
{
	s->host->irq_line(s->host->ctx, s->irq, !(iir(s) & IIR_NO_INT));
}

static size_t rx_push(struct vmm__serial *s, const uint8_t *buf, size_t len);

static uint8_t serial_read(struct vmm__serial *s, unsigned reg)
{
	uint8_t v = 0;

	switch (reg) {
	case UART_RBR_THR:
		if (s->lcr & LCR_DLAB)
			return s->dll;
		if (s->rx_len) {
			v = s->rx[s->rx_head];
			s->rx_head = (s->rx_head + 1) % RX_FIFO_SIZE;
			s->rx_len--;
		}
		break;
	case UART_IER:
		return (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
	case UART_IIR_FCR:
		v = iir(s);
		/* Reading IIR while it reports THRE clears that interrupt (PC16550D, table IV). */
		if ((v & 0x0f) == IIR_THRI)
			s->thr_interrupt = 0;
		break;
	case UART_LCR:
		return s->lcr;
	case UART_MCR:
		return s->mcr;
	case UART_LSR:
		return (uint8_t)(s->lsr | LSR_THRE | LSR_TEMT | (s->rx_len ? LSR_DR : 0));
	case UART_MSR:
		return s->msr;
	case UART_SCR:
		return s->scr;
	}
	update_irq(s);
	return v;
}

/* s->lock held. Returns 1 when v is to be transmitted: the caller hands it to the sink
 * once the lock is dropped, then calls transmitted(). */
static int serial_write(struct vmm__serial *s, unsigned reg, uint8_t v)
{
	switch (reg) {
	case UART_RBR_THR:
		if (s->lcr & LCR_DLAB) {
			s->dll = v;
			return 0;
		}
		if (s->mcr & MCR_LOOP) {
			rx_push(s, &v, 1);
			return 0;
		}
		return 1;
	case UART_IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = v;
			return 0;
		}
		/* Enabling THRI while the THR is empty raises the interrupt immediately. */
		if (!(s->ier & IER_THRI) && (v & IER_THRI))
			s->thr_interrupt = 1;
		s->ier = v & 0x0f;
		break;
	case UART_IIR_FCR:
		s->fcr = v;
		if (v & 0x02) { /* clear the receive FIFO */
			s->rx_head = 0;
			s->rx_len = 0;
		}
		break;
	case UART_LCR:
		s->lcr = v;
		return 0;
	case UART_MCR:
		s->mcr = v & 0x1f;
		return 0;
	case UART_SCR:
		s->scr = v;
		return 0;
	default:
		return 0; /* LSR and MSR are read-only */
	}
	update_irq(s);
	return 0;
}

/* Transmission is instant, so the holding register is empty again as soon as the sink has
 * the byte; the interrupt that says so comes after it, so a guest driven by THRE
 * interrupts on several vCPUs cannot get its next byte out ahead of this one. */
static void transmitted(struct vmm__serial *s)
{
	pthread_mutex_lock(&s->lock);
	s->thr_interrupt = 1;
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

static void serial_io(void *opaque, uint64_t addr, uint8_t *data, uint32_t size, int is_write)
{
	struct vmm__serial *s = opaque;
	unsigned reg = (unsigned)(addr - VMM_COM1_PORT) & 7;
	int transmit = 0;

	pthread_mutex_lock(&s->lock);
	if (is_write)
		transmit = serial_write(s, reg, data[0]);
	else
		data[0] = serial_read(s, reg);
	pthread_mutex_unlock(&s->lock);
	/* The sink runs with no lock held: it may answer with vmm_vm_serial_input() (which
	 * takes s->lock) or call anything else that is safe from a vCPU thread. The byte is
	 * still handed over before this vCPU can park, so a pause or snapshot loses none. */
	if (transmit) {
		if (s->out)
			s->out(s->out_opaque, &data[0], 1);
		transmitted(s);
	}
	if (!is_write && size > 1)
		memset(data + 1, 0, size - 1);
}

/* Appends host bytes to the receive FIFO; s->lock held. */
static size_t rx_push(struct vmm__serial *s, const uint8_t *buf, size_t len)
{
	size_t n = 0;

	while (n < len && s->rx_len < RX_FIFO_SIZE) {
		s->rx[(s->rx_head + s->rx_len) % RX_FIFO_SIZE] = buf[n++];
		s->rx_len++;
	}
	update_irq(s);
	return n;
}

size_t vmm__serial_input(struct vmm__serial *s, const uint8_t *buf, size_t len)
{
	size_t n;

	pthread_mutex_lock(&s->lock);
	n = rx_push(s, buf, len);
	pthread_mutex_unlock(&s->lock);
	return n;
}

static int serial_save(void *dev, uint8_t **buf, size_t *len)
{
	struct vmm__serial *s = dev;
	Vmm__Devices__Uart m = VMM__DEVICES__UART__INIT;
	/* Sized for a full FIFO: host input may arrive (any thread) while a paused VM is
	 * saved, so the registers and the FIFO are copied in one go under the lock. */
	uint8_t *fifo = malloc(RX_FIFO_SIZE);

	if (!fifo)
		return vmm__err(VMM_ENOMEM, "serial state");
	pthread_mutex_lock(&s->lock);
	for (uint32_t i = 0; i < s->rx_len; i++)
		fifo[i] = s->rx[(s->rx_head + i) % RX_FIFO_SIZE];
#define SET(f) (m.has_##f = 1, m.f = s->f)
	SET(ier), SET(lcr), SET(mcr), SET(lsr), SET(msr), SET(scr), SET(dll), SET(dlm), SET(fcr);
#undef SET
	m.has_thr_interrupt = 1;
	m.thr_interrupt = s->thr_interrupt;
	m.has_rx_fifo = 1;
	m.rx_fifo.data = fifo;
	m.rx_fifo.len = s->rx_len;
	pthread_mutex_unlock(&s->lock);
	*len = vmm__devices__uart__get_packed_size(&m);
	*buf = malloc(*len ? *len : 1);
	if (*buf)
		vmm__devices__uart__pack(&m, *buf);
	free(fifo);
	return *buf ? 0 : vmm__err(VMM_ENOMEM, "serial state");
}

static int serial_load(void *dev, const uint8_t *buf, size_t len)
{
	struct vmm__serial *s = dev;
	Vmm__Devices__Uart *m = vmm__devices__uart__unpack(NULL, len, buf);

	if (!m)
		return vmm__err(VMM_ESTATEDATA, "serial: state does not parse");
	if ((m->has_rx_fifo && m->rx_fifo.len > RX_FIFO_SIZE) || m->ier > 0xff || m->lcr > 0xff ||
	    m->mcr > 0xff || m->lsr > 0xff || m->msr > 0xff || m->scr > 0xff || m->dll > 0xff ||
	    m->dlm > 0xff || m->fcr > 0xff) {
		vmm__devices__uart__free_unpacked(m, NULL);
		return vmm__err(VMM_ESTATEDATA, "serial: register or FIFO out of range");
	}
	pthread_mutex_lock(&s->lock);
	s->ier = m->ier, s->lcr = m->lcr, s->mcr = m->mcr, s->lsr = m->lsr;
	s->msr = m->has_msr ? m->msr : MSR_DEFAULT;
	s->scr = m->scr, s->dll = m->dll, s->dlm = m->dlm, s->fcr = m->fcr;
	s->thr_interrupt = m->thr_interrupt;
	s->rx_head = 0;
	s->rx_len = m->has_rx_fifo ? (uint32_t)m->rx_fifo.len : 0;
	if (s->rx_len)
		memcpy(s->rx, m->rx_fifo.data, s->rx_len);
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	vmm__devices__uart__free_unpacked(m, NULL);
	return 0;
}

static void serial_destroy(void *dev)
{
	struct vmm__serial *s = dev;

	pthread_mutex_destroy(&s->lock);
	free(s);
}

static const struct vmm__device_ops serial_ops = {
	.name = VMM_SERIAL_DEVICE,
	.save = serial_save,
	.load = serial_load,
	.destroy = serial_destroy,
};

int vmm__serial_create(const struct vmm__device_host *host, uint16_t port, uint32_t irq,
		       vmm_serial_fn out, void *out_opaque)
{
	struct vmm__serial *s = calloc(1, sizeof(*s));
	int r;

	if (!s)
		return vmm__err(VMM_ENOMEM, "serial");
	s->host = host;
	s->irq = irq;
	s->out = out;
	s->out_opaque = out_opaque;
	s->msr = MSR_DEFAULT;
	s->dll = 12; /* 9600 baud, as firmware leaves it */
	pthread_mutex_init(&s->lock, NULL);
	r = vmm__devices_add(host->devices, &serial_ops, s);
	if (r) {
		serial_destroy(s);
		return r;
	}
	return vmm__bus_add(host->pio, port, 8, serial_io, s);
}
