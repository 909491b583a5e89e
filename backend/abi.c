/* The tables of abi.h, and the compile-time checks that keep them true to
 * runtime.h: every kernel is declared a second time from its kernels.def
 * entry (a conflicting prototype fails the build), and every descriptor
 * field's offset is asserted. */
#include <stddef.h>

#include "abi.h"
#include "runtime.h"

#define KT_THREADS           rt_threads *
#define KT_CONV              const rt_conv *
#define KT_POOL              const rt_pool *
#define KT_INT               int
#define KT_I64               int64_t
#define KT_SIZE              size_t
#define KT_FLOAT             float
#define KT_IN                const float *
#define KT_OUT               float *
#define KT_LABELS            const int32_t *
#define KERNEL(e, name, ...) void rt_##name(__VA_ARGS__);
#include "kernels.def"
#undef KT_THREADS
#undef KT_CONV
#undef KT_POOL
#undef KT_INT
#undef KT_I64
#undef KT_SIZE
#undef KT_FLOAT
#undef KT_IN
#undef KT_OUT
#undef KT_LABELS

#define KT_THREADS RT_KERNEL_TYPE_PTR
#define KT_CONV    RT_KERNEL_TYPE_PTR
#define KT_POOL    RT_KERNEL_TYPE_PTR
#define KT_INT     RT_KERNEL_TYPE_I32
#define KT_I64     RT_KERNEL_TYPE_I64
#define KT_SIZE    RT_KERNEL_TYPE_I64
#define KT_FLOAT   RT_KERNEL_TYPE_F32
#define KT_IN      RT_KERNEL_TYPE_PTR
#define KT_OUT     RT_KERNEL_TYPE_PTR
#define KT_LABELS  RT_KERNEL_TYPE_PTR
const rt_kernel_info rt_kernels[RT_KERNEL_COUNT] = {
#define KERNEL(e, name, ...) [RT_KERNEL_##e] = {"rt_" #name, {__VA_ARGS__}},
#include "kernels.def"
};

/* size_t and int64_t are both i64 to the code generator */
_Static_assert(sizeof(size_t) == 8 && sizeof(int64_t) == 8, "a 64-bit target");

#define DESC(e, field)                                                                             \
	_Static_assert(offsetof(rt_model_desc, field) == 8 * RT_DESC_##e,                          \
	               "rt_model_desc." #field " is not where desc.def puts it");
#include "desc.def"
_Static_assert(sizeof(rt_model_desc) == 8 * RT_DESC_COUNT,
               "rt_model_desc has fields desc.def lacks");

_Static_assert(offsetof(rt_param_desc, name) == 0 && offsetof(rt_param_desc, rank) == 8 &&
                   offsetof(rt_param_desc, dims) == 16 && offsetof(rt_param_desc, offset) == 48 &&
                   sizeof(rt_param_desc) == 56,
               "rt_param_desc is laid out as codegen's param_table builds it");
