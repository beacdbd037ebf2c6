"""Rewrite a float .tflite's word-table GATHER into EMBEDDING_LOOKUP, which weight quantizers
(litert-quantizer's 4- and 8-bit recipes) and LiteRT's hybrid kernels take with a quantized table.

GATHER(table [rows, width], ids [1, seq]) becomes RESHAPE(ids -> [seq]), EMBEDDING_LOOKUP(ids, table)
-> [seq, width], RESHAPE(-> [1, seq, width]) into the GATHER's own output tensor: same values, same
graph around it. EMBEDDING_LOOKUP takes one-dimensional ids, hence the two reshapes."""

from __future__ import annotations

import numpy as np


def gather_to_embedding_lookup(tflite: bytes) -> tuple[bytes, list[str]]:
    """-> (the rewritten flatbuffer, names of the tables now read through EMBEDDING_LOOKUP).

    Only a GATHER on axis 0 whose params are a constant 2-D float table and whose indices are
    [1, seq] int32 is rewritten; any other GATHER stays as it is."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    graph = model.subgraphs[0]
    builtin = schema.BuiltinOperator

    def opcode(code: int) -> int:
        for index, known in enumerate(model.operatorCodes):
            if max(known.builtinCode, known.deprecatedBuiltinCode) == code:
                return index
        new = schema.OperatorCodeT()
        new.builtinCode, new.deprecatedBuiltinCode, new.version = code, min(code, 127), 1
        model.operatorCodes.append(new)
        return len(model.operatorCodes) - 1

    def tensor(name: str, shape: list[int], dtype: int, data: np.ndarray | None = None) -> int:
        buffer = schema.BufferT()
        if data is not None:
            buffer.data = np.frombuffer(data.tobytes(), np.uint8)
        model.buffers.append(buffer)
        new = schema.TensorT()
        new.name, new.shape, new.type, new.buffer = name.encode(), np.array(shape, np.int32), dtype, len(model.buffers) - 1
        graph.tensors.append(new)
        return len(graph.tensors) - 1

    def operator(code: int, inputs: list[int], outputs: list[int], options=None):
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = opcode(code), np.array(inputs, np.int32), np.array(outputs, np.int32)
        if options is not None:
            op.builtinOptionsType, op.builtinOptions = options
        return op

    def constant(index: int) -> bool:
        data = model.buffers[graph.tensors[index].buffer].data
        return data is not None and len(data) > 0

    rewritten, operators = [], []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        params, ids = (op.inputs[0], op.inputs[1]) if len(op.inputs) == 2 else (-1, -1)
        options = op.builtinOptions
        if (max(code.builtinCode, code.deprecatedBuiltinCode) != builtin.GATHER or params < 0
                or not constant(params) or graph.tensors[params].type != schema.TensorType.FLOAT32
                or len(graph.tensors[params].shape) != 2 or list(graph.tensors[ids].shape[:1]) != [1]
                or len(graph.tensors[ids].shape) != 2 or graph.tensors[ids].type != schema.TensorType.INT32
                or (options is not None and (options.axis != 0 or options.batchDims != 0))):
            operators.append(op)
            continue
        seq, width = int(graph.tensors[ids].shape[1]), int(graph.tensors[params].shape[1])
        name = graph.tensors[params].name.decode()
        flat_shape = tensor(f"{name}/ids_shape", [1], schema.TensorType.INT32, np.array([seq], np.int32))
        flat_ids = tensor(f"{name}/ids_flat", [seq], schema.TensorType.INT32)
        rows = tensor(f"{name}/rows", [seq, width], schema.TensorType.FLOAT32)
        out_shape = tensor(f"{name}/out_shape", [3], schema.TensorType.INT32, np.array([1, seq, width], np.int32))
        reshape_in, reshape_out = schema.ReshapeOptionsT(), schema.ReshapeOptionsT()
        reshape_in.newShape, reshape_out.newShape = [seq], [1, seq, width]
        operators += [
            operator(builtin.RESHAPE, [ids, flat_shape], [flat_ids], (schema.BuiltinOptions.ReshapeOptions, reshape_in)),
            operator(builtin.EMBEDDING_LOOKUP, [flat_ids, params], [rows]),
            operator(builtin.RESHAPE, [rows, out_shape], [op.outputs[0]],
                     (schema.BuiltinOptions.ReshapeOptions, reshape_out)),
        ]
        rewritten.append(name)
    graph.operators = operators
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), rewritten
