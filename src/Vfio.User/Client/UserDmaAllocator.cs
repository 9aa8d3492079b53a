using Vfio.Dma;
using Vfio.Linux;
using Vfio.User.Protocol;
using Vfio.User.Transport;

namespace Vfio.User.Client;

/// <summary>
/// DMA memory for a vfio-user device: each buffer is a memfd mapped in this process at an IOVA from an
/// <see cref="IovaAllocator"/>, registered with DMA_MAP (the descriptor passed, so the server maps the same
/// pages). Disposing unmaps it from the server first, then frees it. Without shared memory
/// (<see cref="VfioUserClientOptions.ShareDmaMemory"/> false) the server reaches the buffers through
/// DMA_READ/DMA_WRITE messages, which this allocator serves.
/// </summary>
internal sealed class UserDmaAllocator(VfioUserDevice device) : IDmaAllocator
{
    private readonly Lock _lock = new();
    private readonly List<UserDmaBuffer> _buffers = [];
    private int _nextName;

    public IovaAllocator Iovas { get; } = new([VfioUserDevice.IovaWindow], (ulong)Environment.SystemPageSize);

    public DmaAddressing Addressing => DmaAddressing.Iova;

    /// <summary>This connection's live buffers by IOVA, for <see cref="DmaAudit"/>.</summary>
    public DmaBufferRegistry Registry { get; } = new("vfio-user IOVAs");

    public DmaBuffer Allocate(ulong size, DmaAllocationOptions? options = null)
    {
        options ??= new DmaAllocationOptions();
        ArgumentOutOfRangeException.ThrowIfZero(size);
        if (options.Alignment < 4096 || (options.Alignment & (options.Alignment - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.Alignment, "alignment must be a power of two of at least 4096");
        }
        var memory = new SharedMemory(size, options.Name ?? $"vfio-user-dma-{Interlocked.Increment(ref _nextName)}");
        Iova iova;
        try
        {
            iova = Iovas.Allocate(memory.Length, options.Alignment);
        }
        catch
        {
            memory.Dispose();
            throw;
        }
        var buffer = new UserDmaBuffer(this, memory, size, iova, options.Name);
        try
        {
            var body = new byte[DmaMapRequest.Length];
            new DmaMapRequest(DmaMapFlags.Read | DmaMapFlags.Write, 0, iova.Value, memory.Length).Write(body);
            // Registered before the server knows it, so a DMA_READ arriving right after the map finds it.
            lock (_lock) { _buffers.Add(buffer); }
            using var _ = device.Options.ShareDmaMemory
                ? device.Request(Command.DmaMap, body, [memory.Handle])
                : device.Request(Command.DmaMap, body);
        }
        catch
        {
            lock (_lock) { _buffers.Remove(buffer); }
            Iovas.Free(iova);
            memory.Dispose();
            throw;
        }
        return buffer;
    }

    private void Release(UserDmaBuffer buffer)
    {
        // The server forgets the range first: until it has, its device may still write the pages.
        var body = new byte[DmaUnmapRequest.Length];
        new DmaUnmapRequest(0, buffer.Iova.Value, buffer.Shared.Length).Write(body);
        try
        {
            using var _ = device.Request(Command.DmaUnmap, body);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            // The connection is gone, and with it the server's mapping.
        }
        lock (_lock) { _buffers.Remove(buffer); }
        Iovas.Free(buffer.Iova);
        buffer.Shared.Dispose();
    }

    public CommandResult ServeRead(byte[] body)
    {
        var req = DmaAccess.Read(body, Command.DmaRead);
        if (body.Length != DmaAccess.Length) { throw VfioUserCommandException.Invalid(Command.DmaRead, "a read request carries no data"); }
        Check(req, Command.DmaRead);
        var reply = new byte[DmaAccess.Length + (int)req.Count];
        req.Write(reply);
        Copy(req, Command.DmaRead, (mem) => mem.CopyTo(reply.AsSpan(DmaAccess.Length)));
        return new CommandResult(reply);
    }

    public CommandResult ServeWrite(byte[] body)
    {
        var req = DmaAccess.Read(body, Command.DmaWrite);
        if ((ulong)body.Length != DmaAccess.Length + req.Count) { throw VfioUserCommandException.Invalid(Command.DmaWrite, $"count {req.Count} does not match the data sent"); }
        Check(req, Command.DmaWrite);
        Copy(req, Command.DmaWrite, (mem) => body.AsSpan(DmaAccess.Length).CopyTo(mem));
        var reply = new byte[DmaAccess.Length];
        req.Write(reply);
        return new CommandResult(reply);
    }

    private void Check(DmaAccess req, Command c)
    {
        if (req.Count == 0 || req.Count > (ulong)device.Options.MaxDataTransferSize)
        {
            throw VfioUserCommandException.Invalid(c, $"count {req.Count} is outside 1..{device.Options.MaxDataTransferSize}");
        }
    }

    private delegate void MemoryAction(Span<byte> memory);

    private void Copy(DmaAccess req, Command c, MemoryAction action)
    {
        lock (_lock)
        {
            // Under the lock: Release takes it before freeing memory, so the copy never touches unmapped pages.
            foreach (var b in _buffers)
            {
                ulong start = b.Iova.Value, length = b.Shared.Length;
                if (req.Address >= start && req.Address - start < length && req.Count <= length - (req.Address - start))
                {
                    action(b.Shared.Span.Slice((int)(req.Address - start), (int)req.Count));
                    return;
                }
            }
        }
        throw new VfioUserCommandException(c, Errno.EFAULT, $"[0x{req.Address:x}, +{req.Count}) is not inside one mapped DMA buffer");
    }

    private sealed class UserDmaBuffer(UserDmaAllocator owner, SharedMemory memory, ulong length, Iova iova, string? name)
        : DmaBuffer(memory.Pointer, length, name, owner.Registry)
    {
        public SharedMemory Shared { get; } = memory;

        public Iova Iova { get; } = iova;

        protected override DmaAddress DeviceAddressAt(ulong offset) => DmaAddress.FromIova(Iova + offset);

        protected override ulong ContiguousLengthAt(ulong offset) => Length - offset;

        protected override void ReleaseMemory() => owner.Release(this);
    }
}
