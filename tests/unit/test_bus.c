/* The I/O bus: ordering, overlap refusal, lookup at range edges. */
#include "testutil.h"
#include "libvmm/bus.h"

static void fn(void *o, uint64_t a, uint8_t *d, uint32_t s, int w)
{
}

static void add_and_find(void **state)
{
	struct vmm__bus bus = { 0 };
	int tag[4];

	(void)state;
	assert_int_equal(vmm__bus_add(&bus, 0x3f8, 8, fn, &tag[0]), 0);
	assert_int_equal(vmm__bus_add(&bus, 0x80, 1, fn, &tag[1]), 0);
	assert_int_equal(vmm__bus_add(&bus, 0xf4, 4, fn, &tag[2]), 0);
	assert_int_equal(vmm__bus_add(&bus, 0x3fc, 2, fn, &tag[3]), VMM_EBUSY);
	assert_int_equal(vmm__bus_add(&bus, 0xf0, 5, fn, &tag[3]), VMM_EBUSY);
	assert_int_equal(vmm__bus_add(&bus, 0x10, 0, fn, &tag[3]), VMM_EINVAL);
	assert_int_equal(vmm__bus_add(&bus, ~0ull - 1, 4, fn, &tag[3]), VMM_EINVAL);
	assert_int_equal(vmm__bus_add(&bus, 0x10, 1, NULL, NULL), VMM_EINVAL);
	assert_ptr_equal(vmm__bus_find(&bus, 0x3f8)->opaque, &tag[0]);
	assert_ptr_equal(vmm__bus_find(&bus, 0x3ff)->opaque, &tag[0]);
	assert_null(vmm__bus_find(&bus, 0x400));
	assert_null(vmm__bus_find(&bus, 0x3f7));
	assert_ptr_equal(vmm__bus_find(&bus, 0x80)->opaque, &tag[1]);
	assert_ptr_equal(vmm__bus_find(&bus, 0xf7)->opaque, &tag[2]);
	assert_null(vmm__bus_find(&bus, 0xf8));
	assert_null(vmm__bus_find(&bus, 0));
	for (uint64_t i = 0; i < 100; i++) /* growth past the first allocation */
		assert_int_equal(vmm__bus_add(&bus, 0x1000 + i * 16, 16, fn, NULL), 0);
	for (uint32_t i = 1; i < bus.n; i++)
		assert_true(bus.ranges[i - 1].base < bus.ranges[i].base);
	vmm__bus_free(&bus);
}

static void errors(void **state)
{
	(void)state;
	assert_string_equal(vmm_err_name(VMM_ESTATE), "VMM_ESTATE");
	assert_string_equal(vmm_strerror(0), "success");
	assert_string_equal(vmm_strerror(-9999), "unknown error");
	assert_string_equal(vmm_err_name(-9999), "VMM_UNKNOWN");
	assert_string_equal(vmm_strerror(VMM_ENOKVM),
			    "KVM is not available (/dev/kvm missing or not accessible)");
	assert_int_equal(vmm_version(), VMM_VERSION_HEX);
	assert_string_equal(vmm_version_string(), "0.1.0");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(add_and_find),
		cmocka_unit_test(errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
