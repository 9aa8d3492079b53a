using Vfio.Linux;

namespace Vfio.Tests.Linux;

/// <summary>memfd-backed shared memory and MAP_SHARED mappings of a descriptor, on real memfds.</summary>
public sealed class SharedMappingTests
{
    private static readonly ulong Page = (ulong)Environment.SystemPageSize;

    [Fact]
    public void WritesThroughOneMappingAreSeenThroughASecondMappingOfADuplicate()
    {
        using var memory = new SharedMemory(3 * Page, "shared-mapping-test");
        Assert.Equal(3 * Page, memory.Length);
        memory.Span[0] = 0x5a;
        memory.Span[(int)(2 * Page) + 7] = 0xa5;

        using var dup = memory.Handle.Duplicate();
        Assert.True(SharedMapping.TryGetFileLength(dup, out long length));
        Assert.Equal((long)(3 * Page), length);
        // The second page onwards, as a peer maps the part of a file a DMA_MAP names.
        using var second = SharedMapping.Map(dup, Page, 2 * Page, MappingAccess.ReadWrite);
        Assert.Equal(2 * Page, second.Length);
        Assert.Equal(0xa5, second.Span[(int)Page + 7]);

        // And back: a store through the second mapping shows in the first, after the duplicate is closed.
        dup.Dispose();
        second.Span[1] = 0x33;
        Assert.Equal(0x33, memory.Span[(int)Page + 1]);
    }

    [Fact]
    public void LengthIsRoundedUpToWholePagesAndTheMemoryStartsZeroed()
    {
        using var memory = new SharedMemory(1, "one-byte");
        Assert.Equal(Page, memory.Length);
        Assert.True(memory.Span.IndexOfAnyExcept((byte)0) < 0);
        Assert.NotEqual(0, memory.Pointer);
    }

    [Fact]
    public void ReadOnlyMappingSeesTheDataAndAWriteMappingOfAReadOnlyFileIsRefused()
    {
        using var memory = new SharedMemory(Page, "ro");
        memory.Span[9] = 9;
        using var ro = SharedMapping.Map(memory.Handle, 0, Page, MappingAccess.Read);
        Assert.Equal(9, ro.Span[9]);

        // /proc/self/fd/N opened O_RDONLY is the same memfd without write permission: mmap(PROT_WRITE, MAP_SHARED)
        // fails with EACCES, which the one errno mapping turns into a permission exception.
        using var readOnly = new SafeFdHandle(OpenReadOnly(memory.Handle));
        var e = Assert.Throws<VfioPermissionException>(() => SharedMapping.Map(readOnly, 0, Page, MappingAccess.Write));
        Assert.Equal(Errno.EACCES, e.ErrorNumber);
    }

    [Fact]
    public void MappingSomethingThatCannotBeMappedReportsTheErrno()
    {
        using var eventFd = new EventFd();
        var e = Assert.ThrowsAny<VfioException>(() => SharedMapping.Map(eventFd.Handle, 0, Page, MappingAccess.Read));
        Assert.Equal(Errno.ENODEV, e.ErrorNumber);
    }

    [Fact]
    public void ASocketHasNoFileLength()
    {
        var (a, b) = UnixFdSocket.CreatePair(0);
        using var _a = a;
        using var _b = b;
        using var socket = new SafeFdHandle((int)a.Socket.Handle, ownsHandle: false);
        Assert.False(SharedMapping.TryGetFileLength(socket, out long length));
        Assert.True(length < 0);
    }

    [Fact]
    public void BadArgumentsGetTheirDocumentedExceptions()
    {
        using var memory = new SharedMemory(Page, "bad-args");
        Assert.Throws<ArgumentOutOfRangeException>(() => SharedMapping.Map(memory.Handle, 0, 0, MappingAccess.Read));
        Assert.Throws<ArgumentOutOfRangeException>(() => SharedMapping.Map(memory.Handle, 0, Page, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => SharedMapping.Map(memory.Handle, 0, Page, (MappingAccess)4));
        Assert.Throws<ArgumentOutOfRangeException>(() => SharedMapping.Map(memory.Handle, (ulong)long.MaxValue + 1, Page, MappingAccess.Read));
        Assert.Throws<ArgumentException>(() => SharedMapping.Map(memory.Handle, 1, Page, MappingAccess.Read));
        Assert.Throws<ArgumentNullException>(() => SharedMapping.Map(null!, 0, Page, MappingAccess.Read));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SharedMemory(0, "empty"));
    }

    [Fact]
    public void DisposedObjectsRefuseUse()
    {
        var memory = new SharedMemory(Page, "disposed");
        var mapping = SharedMapping.Map(memory.Handle, 0, Page, MappingAccess.ReadWrite);
        mapping.Dispose();
        mapping.Dispose();
        Assert.True(mapping.IsDisposed);
        Assert.Throws<ObjectDisposedException>(() => mapping.Span.Length);

        memory.Dispose();
        memory.Dispose();
        Assert.True(memory.Handle.IsClosed);
        Assert.Throws<ObjectDisposedException>(() => memory.Span.Length);
        Assert.Throws<ObjectDisposedException>(() => memory.Handle.Duplicate());
        Assert.Throws<ObjectDisposedException>(() => SharedMapping.Map(memory.Handle, 0, Page, MappingAccess.Read));
        Assert.Throws<ObjectDisposedException>(() => SharedMapping.TryGetFileLength(memory.Handle, out _));
    }

    [Fact]
    public void DuplicateOfAnInvalidHandleFailsWithEbadf()
    {
        using var invalid = new SafeFdHandle();
        var e = Assert.ThrowsAny<VfioException>(() => invalid.Duplicate("dup of nothing"));
        Assert.Equal(Errno.EBADF, e.ErrorNumber);
        Assert.Contains("dup of nothing", e.Message, StringComparison.Ordinal);
    }

    private static int OpenReadOnly(SafeFdHandle fd)
    {
        int result = Interop.Libc.open($"/proc/self/fd/{fd.DangerousGetHandle()}", Interop.Libc.O_RDONLY | Interop.Libc.O_CLOEXEC);
        Assert.True(result >= 0, Errno.Describe(Errno.Last));
        return result;
    }
}
