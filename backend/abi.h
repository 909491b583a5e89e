/* abi.h: what generated code and the runtime agree on, as tables the code
 * generator reads: the kernels it calls (runtime/kernels.def) and the
 * descriptor's fields (runtime/desc.def).
 *
 *   const rt_kernel_info *k = &rt_kernels[RT_KERNEL_CONV2D];
 *   // k->name "rt_conv2d", k->types "ppppppi": one per parameter
 *   LLVMValueRef fields[RT_DESC_COUNT];
 *   fields[RT_DESC_BATCH] = ...;   // at offset 8 * RT_DESC_BATCH
 */
#ifndef NETCC_ABI_H
#define NETCC_ABI_H

typedef enum rt_kernel {
#define KERNEL(e, name, ...) RT_KERNEL_##e,
#include "kernels.def"
	RT_KERNEL_COUNT
} rt_kernel;

/* A parameter's type as the code generator passes it. */
typedef enum rt_kernel_type {
	RT_KERNEL_TYPE_PTR = 'p',
	RT_KERNEL_TYPE_I32 = 'i',
	RT_KERNEL_TYPE_I64 = 'l',
	RT_KERNEL_TYPE_F32 = 'f',
} rt_kernel_type;

enum { RT_KERNEL_MAX_PARAMS = 15 };

typedef struct rt_kernel_info {
	const char *name;
	char types[RT_KERNEL_MAX_PARAMS + 1]; /* rt_kernel_type each, NUL-terminated */
} rt_kernel_info;

extern const rt_kernel_info rt_kernels[RT_KERNEL_COUNT];

typedef enum rt_desc_field {
#define DESC(e, field) RT_DESC_##e,
#include "desc.def"
	RT_DESC_COUNT
} rt_desc_field;

#endif
