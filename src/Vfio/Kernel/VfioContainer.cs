using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.Linux;
using static Interop.Vfio;

namespace Vfio.Kernel;

/// <summary>The IOMMU model a container uses.</summary>
public enum VfioIommuType
{
    /// <summary><c>VFIO_TYPE1v2_IOMMU</c>: x86 and arm64 IOMMUs; DMA goes to IOVAs mapped with VFIO_IOMMU_MAP_DMA.</summary>
    Type1v2 = 3,
    /// <summary><c>VFIO_NOIOMMU_IOMMU</c>: no translation, no isolation; DMA goes to physical addresses.</summary>
    NoIommu = 8,
}

/// <summary>
/// A VFIO container (<c>/dev/vfio/vfio</c>): one IOMMU address space shared by the groups attached to it.
/// Devices opened into the same container share DMA buffers (the same IOVAs reach all of them).
/// </summary>
public sealed partial class VfioContainer : IDisposable, IIommuMapper
{
    private readonly ILogger _logger;
    private readonly ILoggerFactory? _loggerFactory;
    private readonly object _lock = new();
    private readonly List<VfioGroup> _groups = [];
    private IReadOnlyList<IovaRange>? _iovaRanges;
    private ulong _pageSizes;
    private IDmaAllocator? _allocator;
    private IDisposable? _allocatorLifetime;

    private VfioContainer(SafeFdHandle handle, string path, ILoggerFactory? loggerFactory)
    {
        Handle = handle;
        Path = path;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory?.CreateLogger<VfioContainer>() ?? NullLogger<VfioContainer>.Instance;
    }

    /// <summary>The container's file descriptor.</summary>
    public SafeFdHandle Handle { get; }

    /// <summary>The node it was opened from.</summary>
    public string Path { get; }

    /// <summary>
    /// Whether iommufd serves this <c>/dev/vfio/vfio</c> (a kernel built with CONFIG_IOMMUFD_VFIO_CONTAINER and
    /// without CONFIG_VFIO_CONTAINER, Linux 6.2+): the container ioctls are then iommufd's emulation of them. Groups,
    /// No-IOMMU mode and type1 DMA mapping work the same way through it; the emulation lacks a few type1 features
    /// (peer-to-peer DMA mappings of another device's BAR, for one), which this library does not use.
    /// </summary>
    public bool ServedByIommufd { get; private init; }

    /// <summary>The IOMMU model, once set.</summary>
    public VfioIommuType? IommuType { get; private set; }

    /// <summary>Opens <c>/dev/vfio/vfio</c> and checks the API version.</summary>
    /// <exception cref="VfioUnavailableException">VFIO is not loaded or speaks another API version.</exception>
    public static VfioContainer Open(string devRoot = "/dev", ILoggerFactory? loggerFactory = null)
    {
        string path = System.IO.Path.Combine(devRoot, "vfio", "vfio");
        int fd = Interop.Libc.open(path, Interop.Libc.O_RDWR | Interop.Libc.O_CLOEXEC);
        if (fd < 0)
        {
            int errno = Errno.Last;
            if (errno == Errno.ENOENT)
            {
                throw new VfioUnavailableException($"{path} does not exist: the vfio module is not loaded");
            }
            throw Errno.ToException(errno, $"open {path}");
        }
        var handle = new SafeFdHandle(fd);
        try
        {
            int version = VfioIoctl.RawValue(handle, VFIO_GET_API_VERSION, 0);
            if (version != VFIO_API_VERSION)
            {
                throw new VfioUnavailableException($"{path} speaks VFIO API version {version}, this library speaks {VFIO_API_VERSION}",
                    "use a kernel whose VFIO API matches (every Linux since 3.6 reports 0)");
            }
            var container = new VfioContainer(handle, path, loggerFactory) { ServedByIommufd = AnswersIommufd(handle) };
            if (container.ServedByIommufd)
            {
                LogServedByIommufd(container._logger, path);
            }
            return container;
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Whether <paramref name="handle"/> answers an iommufd request: reading the global RLIMIT_MODE option
    /// (<c>IOMMU_OPTION</c>, read only, no object created). An iommufd file answers it; the VFIO container fails
    /// it (no IOMMU driver is set yet, so the request reaches nothing that knows it).
    /// </summary>
    private static unsafe bool AnswersIommufd(SafeFdHandle handle)
    {
        var option = new Interop.Iommufd.iommu_option
        {
            size = (uint)sizeof(Interop.Iommufd.iommu_option),
            option_id = Interop.Iommufd.IOMMU_OPTION_RLIMIT_MODE,
            op = Interop.Iommufd.IOMMU_OPTION_OP_GET,
        };
        // SAFETY: option is a local of the size its size field states; the kernel writes only val64.
        return VfioIoctl.Raw(handle, Interop.Iommufd.IOMMU_OPTION, &option) >= 0;
    }

    /// <summary><c>VFIO_CHECK_EXTENSION</c>: whether the kernel offers an IOMMU model or extension.</summary>
    public bool CheckExtension(uint extension) => VfioIoctl.RawValue(Handle, VFIO_CHECK_EXTENSION, (nint)extension) > 0;

    /// <summary>Whether this container can use <paramref name="type"/>.</summary>
    public bool Supports(VfioIommuType type) => CheckExtension((uint)type);

    /// <summary>
    /// Sets the IOMMU model (<c>VFIO_SET_IOMMU</c>); needs at least one group attached. Setting the same model
    /// again is a no-op; a different one is an error.
    /// </summary>
    public void SetIommu(VfioIommuType type)
    {
        lock (_lock)
        {
            if (IommuType == type) { return; }
            if (IommuType is { } existing)
            {
                throw new InvalidOperationException($"container already uses {existing}; a {type} group needs its own container");
            }
            if (!Supports(type))
            {
                throw type == VfioIommuType.NoIommu
                    ? new NoIommuModeDisabledException(null, "the container does not offer VFIO_NOIOMMU_IOMMU")
                    : new VfioUnavailableException($"the container does not offer {type}", "the host's IOMMU driver is not active (intel_iommu=on / amd_iommu=on)");
            }
            VfioIoctl.CallValue(Handle, VFIO_SET_IOMMU, (nint)(uint)type, $"VFIO_SET_IOMMU({type})");
            IommuType = type;
            LogIommuSet(_logger, Path, type);
        }
    }

    /// <summary>IOVA ranges the IOMMU accepts (type1 only; inclusive ends).</summary>
    public IReadOnlyList<IovaRange> IovaRanges
    {
        get
        {
            EnsureType1Info();
            return _iovaRanges!;
        }
    }

    /// <summary>Bitmap of IOMMU page sizes (type1 only).</summary>
    public ulong PageSizes
    {
        get
        {
            EnsureType1Info();
            return _pageSizes;
        }
    }

    /// <summary>The allocator for DMA memory reachable by every device in this container.</summary>
    public IDmaAllocator GetDmaAllocator(bool allowMigratablePages = false) => GetDmaAllocator(allowMigratablePages, null);

    /// <summary>
    /// As <see cref="GetDmaAllocator(bool)"/>, the memory preferring NUMA node <paramref name="preferredNode"/> (null:
    /// the kernel's default): the first device to ask decides for the container's allocator.
    /// </summary>
    internal IDmaAllocator GetDmaAllocator(bool allowMigratablePages, int? preferredNode)
    {
        lock (_lock)
        {
            if (_allocator is not null) { return _allocator; }
            switch (IommuType)
            {
                case VfioIommuType.Type1v2:
                    _allocator = new Type1DmaAllocator(this, new Type1DmaAllocatorOptions { PreferredNumaNode = preferredNode },
                        logger: _loggerFactory?.CreateLogger<Type1DmaAllocator>());
                    break;
                case VfioIommuType.NoIommu:
                    var ni = new NoIommuDmaAllocator(new NoIommuDmaAllocatorOptions { AllowMigratablePages = allowMigratablePages, PreferredNumaNode = preferredNode },
                        _loggerFactory?.CreateLogger<NoIommuDmaAllocator>());
                    (_allocator, _allocatorLifetime) = (ni, ni);
                    break;
                default:
                    throw new InvalidOperationException("the container has no IOMMU model yet; attach a group and set one first");
            }
            return _allocator;
        }
    }

    /// <inheritdoc />
    public unsafe void MapDma(nint vaddr, Iova iova, ulong size)
    {
        RequireType1("VFIO_IOMMU_MAP_DMA");
        var map = new vfio_iommu_type1_dma_map
        {
            argsz = (uint)sizeof(vfio_iommu_type1_dma_map),
            flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
            vaddr = (ulong)vaddr,
            iova = iova.Value,
            size = size,
        };
        // SAFETY: map is a local of the size argsz states.
        VfioIoctl.Call(Handle, VFIO_IOMMU_MAP_DMA, &map, $"VFIO_IOMMU_MAP_DMA({iova}, 0x{size:x} bytes)");
    }

    /// <inheritdoc />
    public unsafe void UnmapDma(Iova iova, ulong size)
    {
        RequireType1("VFIO_IOMMU_UNMAP_DMA");
        if (Handle.IsClosed)
        {
            // Closing the container released its IOMMU domain and every mapping in it (vfio_iommu_type1_release):
            // nothing is left to unmap, and the pages may be freed. Happens when a driver closed the device on a
            // hot-unplug before its owner freed the buffers.
            return;
        }
        var unmap = new vfio_iommu_type1_dma_unmap
        {
            argsz = (uint)sizeof(vfio_iommu_type1_dma_unmap),
            iova = iova.Value,
            size = size,
        };
        // SAFETY: unmap is a local of the size argsz states.
        VfioIoctl.Call(Handle, VFIO_IOMMU_UNMAP_DMA, &unmap, $"VFIO_IOMMU_UNMAP_DMA({iova}, 0x{size:x} bytes)");
        if (unmap.size != size)
        {
            throw new VfioException($"VFIO_IOMMU_UNMAP_DMA({iova}) unmapped 0x{unmap.size:x} of 0x{size:x} bytes");
        }
    }

    internal void AddGroup(VfioGroup group)
    {
        lock (_lock) { _groups.Add(group); }
    }

    internal void RemoveGroup(VfioGroup group)
    {
        lock (_lock) { _groups.Remove(group); }
    }

    /// <summary>Number of groups attached.</summary>
    public int GroupCount
    {
        get { lock (_lock) { return _groups.Count; } }
    }

    private void RequireType1(string operation)
    {
        if (IommuType != VfioIommuType.Type1v2)
        {
            throw new InvalidOperationException($"{operation} needs a type1 container; this one is {IommuType?.ToString() ?? "not set up"}" +
                (IommuType == VfioIommuType.NoIommu ? " (No-IOMMU mode has no DMA mapping: devices use physical addresses)" : ""));
        }
    }

    private unsafe void EnsureType1Info()
    {
        if (_iovaRanges is not null) { return; }
        RequireType1("VFIO_IOMMU_GET_INFO");
        byte[] buffer = VfioInfoBuffer.Query<vfio_iommu_type1_info>(Handle, VFIO_IOMMU_GET_INFO, "VFIO_IOMMU_GET_INFO", null);
        var info = VfioCapabilityChain.ParseIommuType1Info(buffer);
        _pageSizes = info.PageSizes;
        // Kernels before 5.4 report no ranges: fall back to the 39-bit space every VT-d/AMD-Vi IOMMU accepts.
        _iovaRanges = info.IovaRanges.Count > 0 ? info.IovaRanges : [new IovaRange(IovaAllocator.DefaultLowGuard, (1UL << 39) - 1)];
    }

    /// <summary>Releases the DMA allocator (which unmaps what remains), detaches groups and closes the container.</summary>
    public void Dispose()
    {
        if (Handle.IsClosed) { return; }
        _allocatorLifetime?.Dispose();
        VfioGroup[] groups;
        lock (_lock) { groups = [.. _groups]; }
        foreach (var g in groups) { g.Dispose(); }
        Handle.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "{Path} is served by iommufd (CONFIG_IOMMUFD_VFIO_CONTAINER): the container ioctls are iommufd's emulation")]
    private static partial void LogServedByIommufd(ILogger logger, string path);

    [LoggerMessage(Level = LogLevel.Debug, Message = "{Path}: IOMMU model set to {Type}")]
    private static partial void LogIommuSet(ILogger logger, string path, VfioIommuType type);
}
