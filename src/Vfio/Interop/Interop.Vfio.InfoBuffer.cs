using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Vfio;

internal static partial class Interop
{
    internal static partial class Vfio
    {
        /// <summary>
        /// Issues one ioctl on <paramref name="argument"/> and returns its result; on failure the errno is left
        /// where <see cref="Marshal.GetLastPInvokeError"/> finds it (as a SetLastError P/Invoke leaves it).
        /// </summary>
        internal unsafe delegate int IoctlInvoker(byte* argument);

        /// <summary>The buffer size in bytes a reply says the call needs (by default, the <c>argsz</c> it wrote back).</summary>
        internal delegate ulong RequiredArgsz(ReadOnlySpan<byte> reply);

        /// <summary>
        /// Runs VFIO's variable-length INFO ioctls. The caller states its buffer size in <c>argsz</c> (the first
        /// <c>__u32</c> of every such struct); when capabilities do not fit, the kernel still succeeds but writes
        /// back the <c>argsz</c> it needs and leaves the chain out ("Callers of INFO ioctls passing insufficiently
        /// sized buffers ...", linux/vfio.h). So: call with the fixed struct, grow to the reported size, call
        /// again. The returned bytes are the whole reply, ready for <see cref="global::Vfio.Devices.VfioCapabilityChain"/>.
        /// </summary>
        internal static class VfioInfoBuffer
        {
            /// <summary>A reply larger than this is taken as garbage rather than allocated (real ones are &lt; 1 KiB).</summary>
            internal const int MaxArgsz = 1 << 20;

            /// <summary>The size can change between calls (hot reset info counts devices); give up after this many.</summary>
            internal const int MaxAttempts = 4;

            /// <summary>
            /// Runs <paramref name="request"/> with a zeroed <typeparamref name="T"/> as the fixed part, e.g.
            /// <c>Query&lt;vfio_iommu_type1_info&gt;(container, VFIO_IOMMU_GET_INFO, "VFIO_IOMMU_GET_INFO", null)</c>.
            /// </summary>
            public static byte[] Query<T>(SafeHandle handle, nuint request, string operation, PciAddress? device)
                where T : unmanaged =>
                Query(handle, request, default(T), operation, device);

            /// <summary>
            /// Runs <paramref name="request"/> on <paramref name="handle"/> with <paramref name="fixedPart"/> (its
            /// <c>argsz</c> is overwritten with the buffer size) and returns the reply. <paramref name="required"/>
            /// computes the size needed from a reply when the ioctl does not report it in <c>argsz</c>; a failure
            /// with ENOSPC is then retried with that size too.
            /// </summary>
            /// <exception cref="VfioException">The ioctl failed, or the reply size is absurd or never settles.</exception>
            public static unsafe byte[] Query<T>(SafeHandle handle, nuint request, in T fixedPart, string operation,
                PciAddress? device, RequiredArgsz? required = null)
                where T : unmanaged
            {
                bool added = false;
                handle.DangerousAddRef(ref added);
                try
                {
                    int fd = (int)handle.DangerousGetHandle();
                    // SAFETY: Query passes a pinned buffer of exactly the argsz it wrote into it, and the reference
                    // taken above keeps fd open until the last call returns.
                    return Query(fixedPart, argument => Libc.ioctl(fd, request, argument), operation, device, required);
                }
                finally
                {
                    if (added) { handle.DangerousRelease(); }
                }
            }

            /// <summary><c>VFIO_DEVICE_GET_REGION_INFO</c> for region <paramref name="index"/>, capabilities included.</summary>
            public static byte[] QueryRegion(SafeHandle handle, uint index, PciAddress? device) =>
                Query(handle, VFIO_DEVICE_GET_REGION_INFO, new vfio_region_info { index = index },
                    $"VFIO_DEVICE_GET_REGION_INFO({index})", device);

            /// <summary>
            /// <c>VFIO_DEVICE_GET_PCI_HOT_RESET_INFO</c>: a <see cref="vfio_pci_hot_reset_info"/> followed by
            /// <c>count</c> <see cref="vfio_pci_dependent_device"/>. This ioctl does not report a size in argsz: it
            /// fails with ENOSPC and sets <c>count</c>, from which the size follows.
            /// </summary>
            public static unsafe byte[] QueryPciHotResetInfo(SafeHandle handle, PciAddress? device) =>
                Query(handle, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, default(vfio_pci_hot_reset_info),
                    "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", device,
                    static reply => (ulong)sizeof(vfio_pci_hot_reset_info)
                                    + (ulong)MemoryMarshal.Read<vfio_pci_hot_reset_info>(reply).count * (ulong)sizeof(vfio_pci_dependent_device));

            /// <summary>
            /// The grow-and-retry loop itself, over any way of issuing the ioctl (tests pass a fake kernel).
            /// </summary>
            internal static unsafe byte[] Query<T>(in T fixedPart, IoctlInvoker ioctl, string operation, PciAddress? device,
                RequiredArgsz? required = null)
                where T : unmanaged
            {
                int size = sizeof(T);
                if (size < sizeof(uint))
                {
                    throw new ArgumentException($"{typeof(T).Name} cannot start with an argsz field", nameof(fixedPart));
                }
                for (int attempt = 0; attempt < MaxAttempts; attempt++)
                {
                    var buffer = new byte[size];
                    MemoryMarshal.Write(buffer, in fixedPart);
                    // VFIO structures are host-endian; the library runs on little-endian hosts (x86_64, arm64).
                    BinaryPrimitives.WriteUInt32LittleEndian(buffer, (uint)size);

                    int result;
                    fixed (byte* p = buffer)
                    {
                        // SAFETY: p points at buffer.Length == argsz bytes, pinned for the duration of the call.
                        result = ioctl(p);
                    }
                    int errno = result < 0 ? Marshal.GetLastPInvokeError() : 0;
                    if (result < 0 && (required is null || errno != Errno.ENOSPC))
                    {
                        throw Errno.ToException(errno, operation, device);
                    }

                    ulong needed = required is null ? BinaryPrimitives.ReadUInt32LittleEndian(buffer) : required(buffer);
                    if (needed > (ulong)size)
                    {
                        if (needed > MaxArgsz)
                        {
                            throw new VfioException($"{operation}: the kernel asks for a {needed}-byte reply buffer, more than the " +
                                                    $"{MaxArgsz} bytes this library accepts", device);
                        }
                        size = (int)needed;
                        continue;
                    }
                    if (result < 0)
                    {
                        throw Errno.ToException(errno, operation, device);
                    }
                    return buffer;
                }
                throw new VfioException($"{operation}: the reply size was still growing after {MaxAttempts} attempts", device);
            }
        }
    }
}
