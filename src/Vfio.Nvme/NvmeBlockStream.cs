namespace Vfio.Nvme;

/// <summary>
/// A seekable <see cref="Stream"/> over a namespace of an <see cref="NvmeBlockDevice"/>, so that code written for
/// files (copy loops, hashing, compression) can use a drive. Reads and writes at any offset and length: whole
/// blocks go to the device directly, a partial block at either end is read, merged and written back
/// (read-modify-write), which is not atomic against another writer of the same block. <see cref="Length"/> is
/// the namespace's size and cannot change; reads stop there, writes past it throw.
/// Not thread-safe (a position is shared state); open one stream per thread, the device underneath is.
/// </summary>
public sealed class NvmeBlockStream : Stream
{
    private readonly NvmeBlockDevice _device;
    private readonly byte[] _block;
    private long _position;
    private bool _disposed;

    internal NvmeBlockStream(NvmeBlockDevice device)
    {
        _device = device;
        _block = new byte[device.BlockSize];
    }

    /// <inheritdoc />
    public override bool CanRead => !_disposed;

    /// <inheritdoc />
    public override bool CanSeek => !_disposed;

    /// <inheritdoc />
    public override bool CanWrite => !_disposed;

    /// <inheritdoc />
    public override long Length
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _device.Length;
        }
    }

    /// <inheritdoc />
    public override long Position
    {
        get => _position;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            _position = value;
        }
    }

    /// <inheritdoc />
    public override long Seek(long offset, SeekOrigin origin)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        long target = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => _position + offset,
            SeekOrigin.End => _device.Length + offset,
            _ => throw new ArgumentOutOfRangeException(nameof(origin), origin, "not a SeekOrigin"),
        };
        if (target < 0) { throw new IOException($"seeking to {target}: before the start of the namespace"); }
        _position = target;
        return target;
    }

    /// <summary>Not supported: a namespace's size is fixed (NSZE); format or resize it with namespace management.</summary>
    public override void SetLength(long value) => throw new NotSupportedException("a namespace's size is fixed");

    /// <inheritdoc />
    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    /// <inheritdoc />
    public override int Read(Span<byte> buffer)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        long left = _device.Length - _position;
        if (left <= 0 || buffer.IsEmpty) { return 0; }
        if (buffer.Length > left) { buffer = buffer[..(int)left]; }
        int bs = _device.BlockSize;
        int done = 0;
        while (done < buffer.Length)
        {
            long at = _position + done;
            int inBlock = (int)(at % bs);
            int rest = buffer.Length - done;
            if (inBlock == 0 && rest >= bs)
            {
                int whole = rest / bs * bs;
                _device.Read((ulong)(at / bs), buffer.Slice(done, whole));
                done += whole;
                continue;
            }
            // A partial block: read it whole, take the part asked for.
            _device.Read((ulong)(at / bs), _block);
            int n = Math.Min(bs - inBlock, rest);
            _block.AsSpan(inBlock, n).CopyTo(buffer[done..]);
            done += n;
        }
        _position += done;
        return done;
    }

    /// <inheritdoc />
    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    /// <inheritdoc />
    public override void Write(ReadOnlySpan<byte> buffer)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (buffer.IsEmpty) { return; }
        if (_position + buffer.Length > _device.Length)
        {
            throw new IOException($"writing {buffer.Length} bytes at {_position} goes past the end of the {_device.Length}-byte namespace");
        }
        int bs = _device.BlockSize;
        int done = 0;
        while (done < buffer.Length)
        {
            long at = _position + done;
            int inBlock = (int)(at % bs);
            int rest = buffer.Length - done;
            if (inBlock == 0 && rest >= bs)
            {
                int whole = rest / bs * bs;
                _device.Write((ulong)(at / bs), buffer.Slice(done, whole));
                done += whole;
                continue;
            }
            // A partial block: read, merge, write back.
            ulong lba = (ulong)(at / bs);
            _device.Read(lba, _block);
            int n = Math.Min(bs - inBlock, rest);
            buffer.Slice(done, n).CopyTo(_block.AsSpan(inBlock));
            _device.Write(lba, _block);
            done += n;
        }
        _position += done;
    }

    /// <inheritdoc />
    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        int bs = _device.BlockSize;
        long left = _device.Length - _position;
        if (_position % bs == 0 && buffer.Length % bs == 0 && buffer.Length <= left && !buffer.IsEmpty)
        {
            return ReadAlignedAsync(buffer, cancellationToken);
        }
        cancellationToken.ThrowIfCancellationRequested();
        return ValueTask.FromResult(Read(buffer.Span));
    }

    private async ValueTask<int> ReadAlignedAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        await _device.ReadAsync((ulong)(_position / _device.BlockSize), buffer, cancellationToken).ConfigureAwait(false);
        _position += buffer.Length;
        return buffer.Length;
    }

    /// <inheritdoc />
    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    /// <inheritdoc />
    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        int bs = _device.BlockSize;
        if (_position % bs == 0 && buffer.Length % bs == 0 && _position + buffer.Length <= _device.Length && !buffer.IsEmpty)
        {
            return WriteAlignedAsync(buffer, cancellationToken);
        }
        cancellationToken.ThrowIfCancellationRequested();
        Write(buffer.Span);
        return ValueTask.CompletedTask;
    }

    private async ValueTask WriteAlignedAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken)
    {
        await _device.WriteAsync((ulong)(_position / _device.BlockSize), buffer, cancellationToken).ConfigureAwait(false);
        _position += buffer.Length;
    }

    /// <inheritdoc />
    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    /// <summary>Flush (NVMe 1.4 §6.8): what was written is durable when this returns.</summary>
    public override void Flush()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _device.Flush();
    }

    /// <inheritdoc />
    public override Task FlushAsync(CancellationToken cancellationToken) => _device.FlushAsync(cancellationToken).AsTask();

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        _disposed = true;
        base.Dispose(disposing);
    }
}
